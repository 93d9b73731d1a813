#!/bin/sh
# Builds vegeta (the load generator the ingest benchmark drives the compiled reconciler with)
# from the Go module proxy into a version-keyed cache outside the repo. Idempotent: does
# nothing when the cache has this version; a second caller waits for the first
# (scripts/cached-build.sh).
#   sh bench/load/ensure-vegeta.sh       prints the vegeta binary's path on its last line
set -eu
V=${NAVARCH_VEGETA_VERSION:-v12.12.0}
CACHE=${NAVARCH_VEGETA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/navarch/vegeta}
DIR=$CACHE/$V
BIN=$DIR/vegeta
LOCK=.build-$V.lock
NAVARCH_ROOT=$(cd "$(dirname "$0")/../.." && pwd)

built() { [ -x "$BIN" ] && "$BIN" -version >/dev/null 2>&1; }
. "$NAVARCH_ROOT/scripts/cached-build.sh"
mkdir -p "$DIR"
enter_empty_module vegeta "$V"
echo "ensure-vegeta: building vegeta $V (about 1 min cold on 2 cores)" >&2
GOBIN="$DIR" go install -trimpath -ldflags "-s -w" "github.com/tsenart/vegeta/v12@$V" >&2
built || { echo "ensure-vegeta: $BIN does not run" >&2; exit 1; }
echo "ensure-vegeta: built in $(( $(date +%s) - started )) s" >&2
echo "$BIN"
