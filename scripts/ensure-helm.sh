#!/bin/sh
# Builds Helm from its Go module into a version-keyed cache outside the repo (never
# committed) and prints the binary's path on its last line. Idempotent: does nothing when
# the cache already has this version. Used by `npm run images` (renders the chart) and the
# chart's tests. About 3 minutes cold on 2 cores.
#   sh scripts/ensure-helm.sh
set -eu
V=${NAVARCH_HELM_VERSION:-v3.19.0}
CACHE=${NAVARCH_HELM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/navarch/helm}
BIN=$CACHE/$V/bin/helm
LOCK=.build-$V.lock
NAVARCH_ROOT=$(cd "$(dirname "$0")/.." && pwd)

built() { [ -x "$BIN" ] && "$BIN" version --template '{{.Version}}' 2>/dev/null | grep -qx "$V"; }
. "$NAVARCH_ROOT/scripts/cached-build.sh"
mkdir -p "$CACHE/$V/bin"
enter_empty_module helm "$V"
echo "ensure-helm: building helm $V from the Go module proxy (about 3 min cold)" >&2
# The version is stamped as Helm's own release builds do (helm version prints it).
GOBIN="$CACHE/$V/bin" \
  go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$V" "helm.sh/helm/v3/cmd/helm@$V" >&2
built || { echo "ensure-helm: $BIN does not report version $V" >&2; exit 1; }
echo "ensure-helm: built in $(( $(date +%s) - started )) s" >&2
echo "$BIN"
