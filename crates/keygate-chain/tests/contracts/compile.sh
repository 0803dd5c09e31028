#!/usr/bin/env bash
# Compiles TestUSD.sol with solc from npm (package `solc`, at the version and hashes of
# tests/tools/solc/package-lock.json, installed with `npm ci`) into TestUSD.bin (the creation
# bytecode, hex, committed: the tests deploy it on anvil without a compiler). Run it after
# changing the source, and commit both files.
#
#   crates/keygate-chain/tests/contracts/compile.sh
set -euo pipefail
cd "$(dirname "$0")"
lock_dir=../../../../tests/tools/solc
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$lock_dir/package.json" "$lock_dir/package-lock.json" "$tmp/"
npm ci --prefix "$tmp" --no-audit --no-fund --silent >&2
"$tmp/node_modules/.bin/solcjs" --bin --optimize -o "$tmp/out" TestUSD.sol >&2
tr -d '\n' < "$tmp/out/TestUSD_sol_TestUSD.bin" > TestUSD.bin
echo "wrote $(wc -c < TestUSD.bin) hex characters to TestUSD.bin (solc $("$tmp/node_modules/.bin/solcjs" --version))" >&2
