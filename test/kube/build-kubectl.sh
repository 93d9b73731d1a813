#!/bin/sh
# Builds kubectl (the same Kubernetes version as the test control plane) into a
# version-keyed cache outside the repo (never committed), for the tests that use it as
# the client users have. Idempotent; prints the binary's path on its last line.
#   sh test/kube/build-kubectl.sh
# Why inside build.sh's wrapper module: k8s.io/kubernetes needs its staging modules
# replaced, so `go install k8s.io/kubernetes/cmd/kubectl@…` cannot build it alone;
# -mod=mod lets go.sum gain the modules only kubectl needs. About 3 minutes cold.
set -eu
K=${NAVARCH_KUBE_VERSION:-1.34.4}
CACHE=${NAVARCH_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/navarch/kube}
BIN=$CACHE/kubectl-v$K/bin/kubectl
M=${K#1.}; M=${M%%.*}
LOCK=.build-$K.lock
NAVARCH_ROOT=$(cd "$(dirname "$0")/../.." && pwd)

built() { [ -x "$BIN" ] && "$BIN" version --client 2>/dev/null | grep -q "v$K"; }
# The wrapper module (and the control plane the tests need anyway) come from build.sh, which
# takes the same lock (both edit the module's go.mod and go.sum): it runs first.
built || sh "$NAVARCH_ROOT/test/kube/build.sh" >/dev/null
. "$NAVARCH_ROOT/scripts/cached-build.sh"
mkdir -p "$(dirname "$BIN")"
cd "$CACHE/src-$K"
LD="-s -w -X k8s.io/component-base/version.gitVersion=v$K -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$M -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=v$K"
echo "build-kubectl.sh: compiling kubectl v$K (about 3 min cold)" >&2
go build -trimpath -ldflags "$LD" -o "$BIN" k8s.io/kubernetes/cmd/kubectl >&2
built || { echo "build-kubectl.sh: $BIN does not report v$K" >&2; exit 1; }
echo "build-kubectl.sh: built in $(( $(date +%s) - started )) s" >&2
echo "$BIN"
