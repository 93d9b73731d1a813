#!/bin/sh
# The main job on the embedded defaults: builds the fake libnvidia-ml and the
# binaries, then runs the reconciler with a local pool of navarch-node agents,
# breaks a GPU once the pool is ready and shows the replacement (Ctrl-C stops).
#   sh scripts/demo.sh [navarch demo args...]
set -eu
cd "$(dirname "$0")/.."
sh scripts/ensure-bun.sh
sh test/fake-nvml/build.sh
tools/bun/node_modules/.bin/bun run scripts/build.ts
# The local pool's GPUs are simulated by the fake libnvidia-ml, named explicitly.
exec dist/navarch demo --nvml-library "$PWD/test/fake-nvml/build/libnvidia-ml.so.1" "$@"
