#!/bin/sh
# Prints the directory holding the Prometheus Operator's own CRDs (ServiceMonitor,
# PrometheusRule, …) on its last line, from its Go module (go mod download keeps it in
# Go's module cache, outside the repo), so the chart's monitoring objects are checked by
# the API server against the real schemas.
#   sh test/kube/prometheus-operator-crds.sh
set -eu
V=${NAVARCH_PROMETHEUS_OPERATOR_VERSION:-v0.85.0}
GOBINDIR=$(sh "$(dirname "$0")/../../scripts/ensure-go.sh")
PATH="$GOBINDIR:$PATH"
# go mod download needs no module of its own for an explicit version; an empty directory keeps any go.mod out of it.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dir=$(cd "$tmp" && GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod download -json "github.com/prometheus-operator/prometheus-operator@$V" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
crds=$dir/example/prometheus-operator-crd
[ -f "$crds/monitoring.coreos.com_servicemonitors.yaml" ] || { echo "prometheus-operator-crds: no CRDs in $crds" >&2; exit 1; }
echo "$crds"
