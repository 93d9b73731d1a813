#!/bin/sh
# Installs the pinned Bun (tools/bun/package.json) from the npm registry and the
# project's packages from bun.lock. Idempotent: does nothing when both are current.
set -eu
cd "$(dirname "$0")/.."
BUN=tools/bun/node_modules/.bin/bun
want=$(sed -n 's/.*"bun": *"\([^"]*\)".*/\1/p' tools/bun/package.json)
if [ ! -x "$BUN" ] || [ "$("$BUN" --version 2>/dev/null)" != "$want" ]; then
  echo "ensure-bun: installing bun $want from the npm registry" >&2
  (cd tools/bun && npm install --no-audit --no-fund --loglevel=error >&2)
fi
if [ ! -f node_modules/.navarch-lock ] || ! cmp -s bun.lock node_modules/.navarch-lock; then
  echo "ensure-bun: installing packages from bun.lock" >&2
  "$BUN" install --frozen-lockfile >&2
  cp bun.lock node_modules/.navarch-lock
fi
