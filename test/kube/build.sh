#!/bin/sh
# Builds kube-apiserver, kube-controller-manager, etcd and kwok from the Go module
# proxy into a version-keyed cache outside the repo (never committed), for the
# Kubernetes tests. Idempotent: does nothing when the cache already has this version.
#   sh test/kube/build.sh            prints the bin directory on its last line
# Why a wrapper module: k8s.io/kubernetes requires its staging modules at v0.0.0 with
# replace directives, so `go install` cannot build it.
set -eu
K=${NAVARCH_KUBE_VERSION:-1.34.4}
KWOK=${NAVARCH_KWOK_VERSION:-v0.7.0}
S=0.${K#1.}
M=${S#0.}; M=${M%%.*}
CACHE=${NAVARCH_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/navarch/kube}
BIN=$CACHE/v$K-kwok-$KWOK/bin
LOCK=.build-$K.lock
NAVARCH_ROOT=$(cd "$(dirname "$0")/../.." && pwd)

built() {
  [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kube-controller-manager" ] && [ -x "$BIN/etcd" ] && [ -x "$BIN/kwok" ] \
    && [ -f "$BIN/kwok-stages.yaml" ] && "$BIN/kube-apiserver" --version 2>/dev/null | grep -q "v$K"
}
. "$NAVARCH_ROOT/scripts/cached-build.sh"
mkdir -p "$BIN"
enter_empty_module kubebins "$K"
MODS="api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
cri-client csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms
kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller"
for m in $MODS; do go mod edit -replace="k8s.io/$m=k8s.io/$m@v$S"; done
go mod edit -require="k8s.io/kubernetes@v$K"
echo "build.sh: resolving k8s.io/kubernetes v$K from the module proxy" >&2
go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@v$K" "k8s.io/kubernetes/cmd/kube-controller-manager@v$K" >&2
ETCDV=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3 2>/dev/null || true)
go get -tool "go.etcd.io/etcd/server/v3@${ETCDV:-v3.6.4}" >&2
LD="-s -w -X k8s.io/component-base/version.gitVersion=v$K -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$M -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=v$K"
echo "build.sh: compiling kube-apiserver and kube-controller-manager (cold build measured at 1004 s in all on 2 cores)" >&2
go build -trimpath -tags=selinux,notest,grpcnotrace -ldflags "$LD" -o "$BIN/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager >&2
go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3 >&2
echo "build.sh: building kwok $KWOK" >&2
GOBIN="$BIN" go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK" >&2
# kwok's stage definitions ship inside its module.
STAGES=$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK/kustomize/stage
{ for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do cat "$STAGES/$f"; echo "---"; done; } > "$BIN/kwok-stages.yaml"
echo "build.sh: built in $(( $(date +%s) - started )) s" >&2
"$BIN/kube-apiserver" --version >&2
echo "$BIN"
