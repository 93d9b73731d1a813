#!/bin/sh
# Builds k6 (the load generator the ingest benchmark drives the compiled reconciler with)
# from the Go module proxy into a version-keyed cache outside the repo. Idempotent: does
# nothing when the cache has this version; a second caller waits for the first
# (scripts/cached-build.sh).
#   sh bench/load/ensure-k6.sh       prints the k6 binary's path on its last line
set -eu
V=${NAVARCH_K6_VERSION:-v1.8.1}
CACHE=${NAVARCH_K6_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/navarch/k6}
DIR=$CACHE/$V
BIN=$DIR/k6
LOCK=.build-$V.lock
NAVARCH_ROOT=$(cd "$(dirname "$0")/../.." && pwd)

built() { [ -x "$BIN" ] && "$BIN" version 2>/dev/null | grep -q "${V#v}"; }
. "$NAVARCH_ROOT/scripts/cached-build.sh"
# An empty module of our own, so `go install` resolves k6's dependencies as its go.mod says.
SRC=$CACHE/src-$V
mkdir -p "$SRC" "$DIR"
cd "$SRC"
[ -f go.mod ] || go mod init example.local/navarch-k6 >&2
echo "ensure-k6: building k6 $V (about 5 min cold on 2 cores)" >&2
GOBIN="$DIR" go install -trimpath -ldflags "-s -w" "go.k6.io/k6@$V" >&2
built || { echo "ensure-k6: $BIN does not report version $V" >&2; exit 1; }
echo "ensure-k6: built in $(( $(date +%s) - started )) s" >&2
echo "$BIN"
