#!/usr/bin/env bash
# Compiles TestUSD.sol with solc from npm (package `solc`, pinned) into TestUSD.bin (the creation
# bytecode, hex, committed: the tests deploy it on anvil without a compiler). Run it after
# changing the source, and commit both files.
#
#   crates/keygate-chain/tests/contracts/compile.sh
set -euo pipefail
cd "$(dirname "$0")"
solc_version=0.8.28
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
npm install --prefix "$tmp" --no-save --no-audit --no-fund --silent "solc@$solc_version" >&2
"$tmp/node_modules/.bin/solcjs" --bin --optimize -o "$tmp/out" TestUSD.sol >&2
tr -d '\n' < "$tmp/out/TestUSD_sol_TestUSD.bin" > TestUSD.bin
echo "wrote $(wc -c < TestUSD.bin) hex characters to TestUSD.bin (solc $solc_version)" >&2
