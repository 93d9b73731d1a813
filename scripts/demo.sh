#!/bin/sh
# The main job on the embedded defaults: builds the binaries, then runs the
# reconciler with a local pool of navarch-node agents (Ctrl-C stops).
#   sh scripts/demo.sh [navarch demo args...]
set -eu
cd "$(dirname "$0")/.."
sh scripts/ensure-bun.sh
tools/bun/node_modules/.bin/bun run scripts/build.ts
exec dist/navarch demo "$@"
