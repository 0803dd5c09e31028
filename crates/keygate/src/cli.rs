//! The command line, declared with clap's derive API. Every subcommand explains itself in one
//! line of `--help`.

use std::path::PathBuf;

use clap::builder::TypedValueParser;
use clap::{Args, Parser, Subcommand};

/// keygate holds your venue API secrets and hot-wallet keys, so your bots never do.
///
/// Bots get short-lived scoped tokens; every request is decided against policies, limits and
/// an address book; secrets stay encrypted at rest. See docs/ for the full guide.
///
/// The demo, scenario replays, scenarios and benchmarks are in the harness, not in this binary:
/// `keygate-harness demo|replay|scenario|bench ...` (cargo run --release -p keygate-harness -- demo).
#[derive(Debug, Parser)]
#[command(name = "keygate", version, propagate_version = true)]
pub struct Cli {
    /// Data directory: config, SQLite database and master key.
    #[arg(
        long,
        global = true,
        env = "KEYGATE_DATA_DIR",
        default_value = "keygate-data"
    )]
    pub data_dir: PathBuf,

    /// Config file [default: DATA_DIR/keygate.toml].
    #[arg(long, global = true, env = "KEYGATE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Log format on stderr: json, text, or auto (JSON unless stderr is a terminal).
    #[arg(long, global = true, env = "KEYGATE_LOG_FORMAT", value_parser = log_format())]
    pub log_format: Option<LogFormat>,

    /// Who is acting, as recorded in the audit log [default: $USER].
    #[arg(long, global = true, env = "KEYGATE_ACTOR")]
    pub actor: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

pub use keygate_config::LogFormat;

/// `--log-format`: one of the config's log formats, by name.
fn log_format() -> impl clap::builder::TypedValueParser<Value = LogFormat> {
    clap::builder::PossibleValuesParser::new(LogFormat::ALL.map(|(name, _)| name)).map(|s| {
        LogFormat::ALL
            .iter()
            .find(|(name, _)| *name == s)
            .map_or(LogFormat::Auto, |(_, f)| *f)
    })
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a data directory: commented config, database with migrations, and master key.
    Init(InitArgs),
    /// Add, list, rotate or remove venue credentials (secrets come from stdin or the terminal).
    #[command(subcommand)]
    Credential(CredentialCommand),
    /// Move every credential's data key to a new master key, in one transaction.
    Rekey,
    /// Add, list, disable or enable clients (bots and services) and their scope.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Issue, list, revoke or check client tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Set or list observed asset prices in USD.
    #[command(subcommand)]
    Price(PriceCommand),
    /// Manage the address book of withdrawal and transfer destinations.
    #[command(subcommand)]
    Address(AddressCommand),
    /// Validate policies against the schema, or dry-run them on test cases.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Verify, read, checkpoint or export the hash-chained audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Show what keygate would decide for an intent now (JSON, file or stdin); records nothing.
    Decide(DecideArgs),
    /// Freeze a scope (all, client:NAME, venue:NAME, credential:ID) at once, or `freeze list`.
    Freeze(FreezeArgs),
    /// Sign and submit an approval (freeze:ID, hold:ID or address:ID) with an approver key; a
    /// quorum lifts the freeze, lets the held request through, or approves the address.
    Approve(ApproveArgs),
    /// List held requests waiting for approvals (`keygate approve hold:ID`).
    Holds(HoldsArgs),
    /// Make an approver key.
    #[command(subcommand)]
    Approver(ApproverCommand),
    /// Run the gateway: bots call /venues/<venue>/…; keygate decides, signs and forwards.
    Serve(ServeArgs),
    /// Ask each venue what keygate's key there may do, and report what is unsafe.
    Doctor,
    /// Containment at the venue: what was done where a freeze covers a venue, and what is
    /// pending.
    #[command(subcommand)]
    Containment(ContainmentCommand),
}

#[derive(Debug, Subcommand)]
pub enum ContainmentCommand {
    /// Each containment and its steps: done, pending, refused.
    Status(ContainmentStatusArgs),
}

#[derive(Debug, Args)]
pub struct ContainmentStatusArgs {
    /// Finished containments too.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct FreezeArgs {
    /// What to freeze: all, client:NAME, venue:NAME or credential:ID; or `list`.
    pub target: String,
    /// Why (shown with every decision the freeze denies).
    #[arg(long)]
    pub reason: Option<String>,
    /// With `list`: lifted freezes too.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// What to approve: freeze:ID (lifting that freeze), hold:ID (a held request) or
    /// address:ID (an address-book entry).
    pub subject: String,
    /// The approver's Ed25519 key file.
    #[arg(long)]
    pub key: PathBuf,
    /// How long the approval stays valid (at most approvals.max_validity).
    #[arg(long, default_value = "15m")]
    pub ttl: String,
}

#[derive(Debug, Args)]
pub struct HoldsArgs {
    /// Carried-out and expired holds too.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Subcommand)]
pub enum ApproverCommand {
    /// Write a new approver key (mode 0600) and print its public key.
    Keygen {
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen on this address instead of server.listen (port 0 picks a free one; the first
    /// line on stdout says which).
    #[arg(long)]
    pub listen: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Add a client with the venues and actions it may ever use.
    Add(ClientAddArgs),
    /// List clients and their scope.
    List(ListArgs),
    /// Disable a client: its tokens stop working on the next request.
    Disable(NameArg),
    /// Enable a disabled client again.
    Enable(NameArg),
    /// Set the instruments a client may trade, replacing its list (none: it trades nothing).
    Instruments(ClientInstrumentsArgs),
}

#[derive(Debug, Args)]
pub struct ClientInstrumentsArgs {
    /// The client's name.
    pub name: String,
    /// An instrument it may trade, BASE/QUOTE such as BTC/USDT (repeat for several; none
    /// clears the list).
    #[arg(long = "instrument")]
    pub instruments: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ClientAddArgs {
    /// The client's name, e.g. mm-bot.
    pub name: String,
    /// A venue it may use (repeat for several).
    #[arg(long = "venue", required = true)]
    pub venues: Vec<String>,
    /// An action it may take: read, trade, cancel, withdraw or transfer (repeat for several).
    #[arg(long = "action", required = true)]
    pub actions: Vec<keygate_core::Action>,
    /// A tag policies can test (`principal.tags.contains("…")`); repeat for several.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// An instrument it may trade, BASE/QUOTE such as BTC/USDT, on any of its venues (repeat
    /// for several). A client with none trades nothing, whatever its actions.
    #[arg(long = "instrument")]
    pub instruments: Vec<String>,
}

#[derive(Debug, Args)]
pub struct NameArg {
    pub name: String,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token (or, with --native, an exchange-native API key) for a client; it is
    /// printed once, and stored only as a hash (a native key's secret: sealed in the vault).
    Issue(TokenIssueArgs),
    /// List tokens (never their secrets).
    List(TokenListArgs),
    /// Revoke a token: it stops working on the next request of every instance.
    Revoke(TokenIdArg),
    /// Check a token (read from stdin) as a request would; failures are audited.
    Check(TokenCheckArgs),
}

#[derive(Debug, Args)]
pub struct TokenIssueArgs {
    /// The client the token is for.
    pub client: String,
    /// Lifetime, e.g. 15m, 8h [default: tokens.default_ttl].
    #[arg(long)]
    pub ttl: Option<String>,
    /// Source addresses it may be used from, e.g. 10.0.0.5/32 (repeat) [default: tokens.default_cidrs].
    #[arg(long = "cidr")]
    pub cidrs: Vec<String>,
    /// Narrow it to these venues (repeat) [default: the client's].
    #[arg(long = "venue")]
    pub venues: Vec<String>,
    /// Narrow it to these actions (repeat) [default: the client's].
    #[arg(long = "action")]
    pub actions: Vec<keygate_core::Action>,
    /// Issue an exchange-native API key instead: an API key, a secret and an OKX passphrase,
    /// which an unmodified bot signs its requests with as it would for Binance or OKX. Printed
    /// once as KEYGATE_API_KEY=…, KEYGATE_API_SECRET=…, KEYGATE_API_PASSPHRASE=… lines; the
    /// secret is sealed in the vault (needs the master key).
    #[arg(long)]
    pub native: bool,
}

#[derive(Debug, Args)]
pub struct TokenListArgs {
    /// Only this client's tokens.
    #[arg(long)]
    pub client: Option<String>,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TokenIdArg {
    /// The token's id (the 16 hex digits after kgt_).
    pub id: String,
}

#[derive(Debug, Args)]
pub struct TokenCheckArgs {
    /// The source address the request comes from.
    #[arg(long)]
    pub ip: std::net::IpAddr,
    #[arg(long)]
    pub venue: String,
    #[arg(long)]
    pub action: keygate_core::Action,
}

#[derive(Debug, Subcommand)]
pub enum PriceCommand {
    /// Record an asset's price in USD per unit, observed now.
    Set(PriceSetArgs),
    /// List pinned and observed prices and whether each is fresh.
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct PriceSetArgs {
    pub asset: String,
    /// USD per unit, a decimal such as 43000.50.
    pub usd: String,
}

#[derive(Debug, Subcommand)]
pub enum AddressCommand {
    /// Add a destination; it is usable after the cool-down and another admin's approval.
    Add(AddressAddArgs),
    /// Approve a destination someone else added.
    Approve(EntryIdArg),
    /// Remove a destination: withdrawals to it are refused from the next decision on.
    Remove(EntryIdArg),
    /// List the address book with each entry's state.
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct AddressAddArgs {
    /// The destination address.
    pub address: String,
    #[arg(long)]
    pub venue: String,
    #[arg(long)]
    pub asset: String,
    /// What the address is, e.g. "cold wallet" (policies can test it).
    #[arg(long)]
    pub label: String,
    /// Cool-down before it is usable [default: address_book.cooldown].
    #[arg(long)]
    pub cooldown: Option<String>,
    /// The network, as the venue names it in a withdrawal (Binance `network` such as ETH, OKX
    /// `chain` such as USDT-ERC20). Without it the entry approves only withdrawals that name
    /// no network (the venue's default); an entry for one network approves no other.
    #[arg(long)]
    pub network: Option<String>,
    /// How the funds arrive: chain (an on-chain withdrawal), or an internal transfer to the
    /// venue account named by email, phone, uid or account (a login name).
    #[arg(long, default_value = "chain")]
    pub via: keygate_core::route::Via,
    /// The area code of a phone number (with --via phone), e.g. 86.
    #[arg(long)]
    pub area_code: Option<String>,
    /// A memo or tag (XRP, XLM, EOS...): the entry is `ADDRESS:MEMO`, and approves only that tag.
    #[arg(long)]
    pub memo: Option<String>,
}

#[derive(Debug, Args)]
pub struct EntryIdArg {
    /// The entry's id, as `address list` shows it.
    pub id: i64,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check policy files against the schema [default: the configured policies, limits and prices].
    Validate(PolicyValidateArgs),
    /// Dry-run policies on cases (JSON lines) and print each verdict and the policies behind it.
    Test(PolicyTestArgs),
    /// Print keygate's Cedar schema.
    Schema,
}

#[derive(Debug, Args)]
pub struct PolicyValidateArgs {
    /// Policy files or directories.
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PolicyTestArgs {
    /// A policy file or directory.
    pub policies: PathBuf,
    /// Cases, one JSON object per line (see docs/policy.md).
    pub cases: PathBuf,
    /// Print JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain and checkpoint signatures; name the first bad entry.
    Verify(AuditVerifyArgs),
    /// Print the latest entries.
    Tail(AuditTailArgs),
    /// Print one entry in full.
    Show(AuditShowArgs),
    /// Sign a checkpoint of the chain now.
    Checkpoint,
    /// Write every checkpoint to a file (JSON lines), to keep outside the store.
    Export(AuditExportArgs),
}

#[derive(Debug, Args)]
pub struct AuditVerifyArgs {
    /// Also check checkpoints exported earlier [default: audit.export_file, if it exists].
    #[arg(long)]
    pub checkpoints: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct AuditTailArgs {
    /// How many entries.
    #[arg(short = 'n', long, default_value_t = 20)]
    pub count: i64,
    /// Print JSON lines.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AuditShowArgs {
    /// The entry's sequence number (a decision's id).
    pub seq: i64,
}

#[derive(Debug, Args)]
pub struct AuditExportArgs {
    /// The file to write (refuses to overwrite).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct DecideArgs {
    /// The intent as JSON (see docs/policy.md), or - for stdin.
    pub intent: PathBuf,
    /// Decide as of this time (RFC 3339) instead of now.
    #[arg(long)]
    pub at: Option<String>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Derive the master key from a passphrase (terminal prompt or KEYGATE_PASSPHRASE) with
    /// Argon2id, instead of a random key in master.key.
    #[arg(long)]
    pub passphrase: bool,

    /// Store URL to write into the config: sqlite://PATH (default, relative to the data
    /// directory) or postgres://USER@HOST/DB to share state between instances.
    #[arg(long, value_name = "URL")]
    pub store_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum CredentialCommand {
    /// Store a new credential; its secret parts are read from stdin, one per line, or prompted.
    Add(AddArgs),
    /// Show credentials' metadata (never their secrets).
    List(ListArgs),
    /// Store a new version of a credential and disable the old one.
    Rotate(IdArg),
    /// Delete a credential and all its versions.
    Remove(IdArg),
    /// Check that every stored version decrypts with the master key and matches its fingerprint.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Only this credential [default: all].
    pub id: Option<String>,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// Venue the credential is for, e.g. binance-main (letters, digits, - and _).
    #[arg(long)]
    pub venue: String,

    /// binance-hmac (API key, secret), okx-hmac (API key, secret, passphrase) or evm-key
    /// (private key hex).
    #[arg(long)]
    pub kind: keygate_vault::CredentialKind,

    /// Id to give the credential [default: a random cr_… id].
    #[arg(long)]
    pub id: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct IdArg {
    /// The credential's id, as `credential list` shows it.
    pub id: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_has_a_one_line_help() {
        fn walk(cmd: &clap::Command, path: &str) {
            for sub in cmd.get_subcommands() {
                let name = format!("{path} {}", sub.get_name());
                let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
                assert!(!about.is_empty(), "`{name}` has no help line");
                assert!(!about.contains('\n'), "`{name}` help is not one line");
                walk(sub, &name);
            }
        }
        walk(&Cli::command(), "keygate");
    }
}
