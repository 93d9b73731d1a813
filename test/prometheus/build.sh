#!/bin/sh
# Builds prometheus and promtool from the Go module proxy into a version-keyed cache
# outside the repo (never committed), for the alert-rule and real-scrape tests.
# Idempotent: does nothing when the cache already has this version.
#   sh test/prometheus/build.sh      prints the bin directory on its last line
# Why a wrapper module: the prometheus module's go.mod has exclude directives, so
# `go install github.com/prometheus/prometheus/cmd/promtool@…` is refused; `go get` into
# a module of our own and `go build` from there works. Prometheus 3.X.Y is module
# version v0.3XX.Y.
set -eu
V=${NAVARCH_PROMETHEUS_VERSION:-3.7.3}
MINOR=${V#3.}; MINOR=${MINOR%%.*}
PATCH=${V##*.}
MOD=v0.$((300 + MINOR)).$PATCH
CACHE=${NAVARCH_PROMETHEUS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/navarch/prometheus}
BIN=$CACHE/v$V/bin
LOCK=.build-$V.lock
NAVARCH_ROOT=$(cd "$(dirname "$0")/../.." && pwd)

built() {
  [ -x "$BIN/prometheus" ] && [ -x "$BIN/promtool" ] \
    && "$BIN/prometheus" --version 2>/dev/null | grep -q "version $V " \
    && "$BIN/promtool" --version 2>/dev/null | grep -q "version $V "
}
. "$NAVARCH_ROOT/scripts/cached-build.sh"
mkdir -p "$BIN"
enter_empty_module prometheus "$V"
echo "build.sh: resolving github.com/prometheus/prometheus $MOD (Prometheus $V) from the module proxy" >&2
go get "github.com/prometheus/prometheus@$MOD" >&2
# The version flags of both binaries, as a release build sets them (built() checks them).
LD="-s -w -X github.com/prometheus/common/version.Version=$V -X github.com/prometheus/common/version.Revision=$MOD -X github.com/prometheus/common/version.Branch=module -X github.com/prometheus/common/version.BuildUser=navarch-test"
echo "build.sh: compiling prometheus and promtool (cold build measured at 671 s in all on 2 cores with empty Go caches)" >&2
go build -trimpath -ldflags "$LD" -o "$BIN/" github.com/prometheus/prometheus/cmd/prometheus github.com/prometheus/prometheus/cmd/promtool >&2
echo "build.sh: built in $(( $(date +%s) - started )) s" >&2
"$BIN/prometheus" --version >&2
echo "$BIN"
