#!/usr/bin/env bash
# Fails when packages/proto/src/gen is not what `npm run generate` makes of proto/.
set -euo pipefail
cd "$(dirname "$0")/.."
npx buf lint
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
npx buf generate -o "$tmp"
if ! diff -r "$tmp/packages/proto/src/gen" packages/proto/src/gen; then
  echo "packages/proto/src/gen is stale: run 'npm run generate' and commit the result" >&2
  exit 1
fi
echo "generated code is up to date"
