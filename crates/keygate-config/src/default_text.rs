//! The commented config that `keygate init` writes.

use crate::MasterKeySource;

/// The commented config that `keygate init` writes.
pub fn default_config_text(store_url: &str, source: MasterKeySource) -> String {
    let master_key = match source {
        MasterKeySource::File => "file",
        MasterKeySource::Passphrase => "passphrase",
    };
    format!(
        r#"# keygate configuration, written by `keygate init`.
# Every field is documented in docs/config.md, with the ones an environment variable
# KEYGATE_<SECTION>_<FIELD> can override (for example KEYGATE_STORE_URL). Relative paths are relative to the
# directory of this file.

[store]
# Where keygate keeps its state.
#   sqlite://PATH                embedded SQLite in WAL mode; no set-up, one machine
#   postgres://USER@HOST/DB      PostgreSQL, for several instances sharing state
# Put a PostgreSQL password in KEYGATE_STORE_URL rather than in this file.
url = "{store_url}"

[vault]
# Where the master key comes from; it wraps every credential's data key.
#   "file"        a random 256-bit key in key_file (mode 0600; keygate refuses a looser mode)
#   "passphrase"  derived with Argon2id from a passphrase read from the terminal or
#                 KEYGATE_PASSPHRASE; the parameters and salt are in kdf_file
master_key = "{master_key}"
key_file = "master.key"
kdf_file = "master.kdf"

[log]
# "auto" (JSON unless stderr is a terminal), "json" or "text".
format = "auto"
# A level (error, warn, info, debug, trace) or tracing directives such as "keygate=debug".
level = "info"

[policy]
# Cedar policy files, or directories whose *.cedar files are all loaded. Nothing is allowed that
# no policy permits. Check changes first: keygate policy validate; keygate policy test.
files = ["policies"]

[prices]
# A value-moving request priced from an observed price older than this is denied.
max_age = "5m"

[prices.pinned]
# Prices you fix yourself (USD per unit); they never go stale. Others: `keygate price set`.
USDT = "1"
USDC = "1"

[trading]
# Orders are valued at their notional: quantity x limit price, or for a market order sized in its
# base asset the instrument's reference price (the mid of the venue's book, read every
# reference_poll) plus slippage_bps. An order whose reference is older than reference_max_age
# is denied.
slippage_bps = 100
reference_max_age = "30s"
reference_poll = "5s"

[tokens]
default_ttl = "15m"
max_ttl = "24h"
# Where a token may be used from when `token issue` gets no --cidr: this machine only.
default_cidrs = ["127.0.0.1/32", "::1/128"]

[address_book]
# A new destination is usable only after this cool-down and another admin's approval.
# `address add --cooldown` may lengthen it, never shorten it.
cooldown = "24h"

[decide]
# If this host's clock is further behind the latest audit entry, or ahead of the store's clock,
# keygate denies (a clock that jumped ahead must not reopen limit windows).
max_clock_skew = "5s"

[audit]
# The Ed25519 key that signs audit checkpoints, and where checkpoints are exported (keep a copy
# of that file somewhere the store's writers cannot reach).
signing_key = "audit.key"
checkpoint_every = 1000
checkpoint_interval = "1m"
export_file = "audit-checkpoints.jsonl"
trusted_keys = []

[server]
# Where `keygate serve` listens. Loopback by default; on any other address set tls_cert and
# tls_key (PEM files) so tokens never cross the network in clear text.
listen = "127.0.0.1:8620"
# How long an opened venue credential stays in memory; a rotation takes effect within it.
credential_ttl = "30s"

# The venues the gateway serves. A bot calls http://LISTEN/venues/<name>/<the venue's REST path>
# with its keygate token; keygate decides, signs with the credential and forwards.
# [venues.binance-main]
# kind = "binance"                      # or "okx"
# base_url = "https://api.binance.com"  # https, except to a loopback address
# credential = "binance-main"           # the vault credential's id [default: the venue's name]
# timeout = "10s"
# reconcile_every = "60s"               # read the withdrawal history and match it; "off" disables
# reconcile_lookback = "24h"            # how far back the first reading goes
# extra_read_paths = []                 # more GET paths to allow as reads
# anonymous_public = false              # forward public market data without credentials (ccxt)
# anonymous_rate = 10                   # ... at most this many a second per source address
# containment_credential = "binance-master"  # the master account's containment key (docs/containment.md)
# sub_account = "trading1@example.com"  # the sub-account the credential belongs to (OKX: its name)
#
# An EVM chain: transfers through POST /v1/transfers, and a watcher that freezes on any outflow
# keygate did not sign (docs/chain.md).
# [venues.eth]
# kind = "evm"
# rpc_url = "https://…"                 # the node's JSON-RPC URL; https, except to loopback
# chain_id = 1                          # checked against the node
# credential = "eth"                    # an evm-key credential [default: the venue's name]
# confirmations = 12                    # depth at which a transfer is reported confirmed
# poll = "100ms"                        # how often the watcher asks for new blocks
# rescue_to = "0x…"                     # a cold address (an active address-book entry of this
#                                       # venue): the treasury is swept there when its key is
#                                       # used outside keygate; none: no rescue (docs/chain.md)
# rescue_rpc_urls = []                  # more endpoints a rescue's transactions are sent to
# [venues.eth.tokens]
# USDT = {{ contract = "0xdAC17F958D2ee523a2206206994597C13D831ec7", decimals = 6 }}

[approvals]
# Freezes are lifted only by this many signed approvals of distinct approvers (Ed25519 keys;
# `keygate approver keygen --out FILE` makes one and prints the public key to list here).
approvers = []
quorum = 2
max_validity = "1h"
# How long a held request waits for approvals (`keygate approve hold:ID`); then it is a deny.
hold_ttl = "1h"

[detectors]
# Anomaly detectors over each client's withdrawals and transfers, against its own history over
# `window` (see docs/detection.md for every field). response: alert, hold, deny, freeze-client,
# freeze-credential, freeze-venue or freeze-all; the strongest signal of a request is applied.
window = "14d"
[detectors.new_destination]
response = "alert"
[detectors.size_jump]
response = "hold"
[detectors.velocity]
response = "hold"
[detectors.test_then_drain]
response = "freeze-client"
[detectors.off_hours]
response = "alert"
# Trade detectors, over each client's allowed trades (docs/detection.md#trade-detectors). An
# order priced more than `bps` from the market against the client is denied; from `far_bps` on,
# the client is frozen too.
[detectors.new_instrument]
response = "alert"
[detectors.trade_size_jump]
response = "hold"
[detectors.trade_velocity]
response = "hold"
[detectors.off_market]
response = "deny"
bps = 500
far_bps = 2000
far_response = "freeze-client"
[detectors.dormant_wake]
response = "hold"
min_usd = "10000"

[containment]
# What an unapproved outflow (a withdrawal reconciliation cannot match) freezes: "all",
# "venue", "credential" or "none" (alarm only).
unapproved_outflow = "all"
# At a venue with a containment_credential, when a freeze covers it: lock the leaked key
# ("ip-restrict" to egress_ip, "delete" on OKX only, or "off"), sweep the sub-account's balances
# to the master account, and stop its transfers out (OKX). See docs/containment.md.
# lock_key = "ip-restrict"
# egress_ip = ["203.0.113.7"]           # keygate's own egress addresses; needed by ip-restrict
# sweep = true
# stop_transfers = true

# Rolling limits over allowed withdrawals and transfers (see docs/config.md). client, venue and
# asset narrow a limit; "*" gives each client (venue, asset) its own bucket.
[[limits]]
name = "treasury-24h"
window = "24h"
max_usd = "1000000"

[[limits]]
name = "per-client-1h"
client = "*"
window = "1h"
max_usd = "100000"
max_count = 20

# Trades count by their notional only in limits that say so.
[[limits]]
name = "per-client-trades-1h"
client = "*"
actions = ["trade"]
window = "1h"
max_usd = "500000"
"#
    )
}
