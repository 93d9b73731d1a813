#!/bin/sh
# Builds k6 (the load generator the ingest benchmark drives the compiled reconciler with)
# from the Go module proxy into a version-keyed cache outside the repo. Idempotent: does
# nothing when the cache has this version; a second caller waits for the first (flock).
#   sh bench/load/ensure-k6.sh       prints the k6 binary's path on its last line
set -eu
V=${NAVARCH_K6_VERSION:-v1.8.1}
CACHE=${NAVARCH_K6_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/navarch/k6}
DIR=$CACHE/$V
BIN=$DIR/k6
built() { [ -x "$BIN" ] && "$BIN" version 2>/dev/null | grep -q "${V#v}"; }
if built; then
  echo "$BIN"
  exit 0
fi
GOBINDIR=$(sh "$(dirname "$0")/../../scripts/ensure-go.sh")
PATH="$GOBINDIR:$PATH"
mkdir -p "$DIR"
if command -v flock >/dev/null; then
  exec 9>"$CACHE/.build-$V.lock"
  flock 9
  if built; then
    echo "$BIN"
    exit 0
  fi
fi
started=$(date +%s)
# An empty module of our own, so `go install` resolves k6's dependencies as its go.mod says.
SRC=$CACHE/src-$V
mkdir -p "$SRC"
cd "$SRC"
[ -f go.mod ] || go mod init example.local/navarch-k6 >&2
echo "ensure-k6: building k6 $V (about 5 min cold on 2 cores)" >&2
GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0 GOBIN="$DIR" go install -trimpath -ldflags "-s -w" "go.k6.io/k6@$V" >&2
echo "ensure-k6: built in $(( $(date +%s) - started )) s" >&2
echo "$BIN"
