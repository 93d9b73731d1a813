#!/bin/sh
# Prints the bin directory of a Go toolchain for the test harnesses' builds (Kubernetes,
# Prometheus, Helm, the load generator): the `go` on PATH when it is at least $MIN, else Go
# $NAVARCH_GO_VERSION fetched once from the Go module proxy (the golang.org/toolchain module,
# which is how `go` itself fetches toolchains) into ~/.cache/navarch/go/VERSION. A fresh
# machine with only Node.js needs nothing else. Exits non-zero with the reason when it cannot.
#   PATH="$(sh scripts/ensure-go.sh):$PATH"
set -eu
V=${NAVARCH_GO_VERSION:-1.26.8}
MIN=1.24
here=$(cd "$(dirname "$0")" && pwd)

at_least() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]; }
if command -v go >/dev/null 2>&1; then
  have=$(go env GOVERSION 2>/dev/null | sed 's/^go//')
  if [ -n "$have" ] && at_least "$have" "$MIN"; then
    dirname "$(command -v go)"
    exit 0
  fi
fi

cache=${XDG_CACHE_HOME:-$HOME/.cache}/navarch/go/$V
if [ -x "$cache/go/bin/go" ]; then
  echo "$cache/go/bin"
  exit 0
fi
case $(uname -m) in
  x86_64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "ensure-go: no Go toolchain for $(uname -m)" >&2; exit 1 ;;
esac
proxy=${GOPROXY:-https://proxy.golang.org}
proxy=${proxy%%,*}
case $proxy in direct | off | "") proxy=https://proxy.golang.org ;; esac
mod=v0.0.1-go$V.linux-$arch
url="$proxy/golang.org/toolchain/@v/$mod.zip"

mkdir -p "$(dirname "$cache")"
tmp=$(mktemp -d "$(dirname "$cache")/.go-$V.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "ensure-go: fetching Go $V from $url" >&2
if command -v curl >/dev/null 2>&1; then
  curl -fsSL --retry 3 -o "$tmp/go.zip" "$url"
else
  node -e 'fetch(process.argv[1]).then(async (r) => { if (!r.ok) throw new Error(`HTTP ${r.status}`); require("fs").writeFileSync(process.argv[2], Buffer.from(await r.arrayBuffer())); }).catch((e) => { console.error(`ensure-go: ${e.message}`); process.exit(1); })' "$url" "$tmp/go.zip"
fi
if command -v unzip >/dev/null 2>&1; then
  unzip -q "$tmp/go.zip" -d "$tmp/x"
elif command -v python3 >/dev/null 2>&1; then
  python3 -m zipfile -e "$tmp/go.zip" "$tmp/x"
else
  sh "$here/apt-install.sh" ensure-go unzip
  unzip -q "$tmp/go.zip" -d "$tmp/x"
fi
root="$tmp/x/golang.org/toolchain@$mod"
[ -f "$root/bin/go" ] || { echo "ensure-go: $url has no bin/go" >&2; exit 1; }
# Module zips carry no file modes: the programs become executable here, as `go` does it.
chmod +x "$root/bin/"* "$root/pkg/tool/"*/*
mv "$root" "$tmp/go"
rm -rf "$cache"
mkdir -p "$cache"
mv "$tmp/go" "$cache/go"
"$cache/go/bin/go" version >&2
echo "$cache/go/bin"
