#!/bin/sh
# npm run images: from a fresh clone, renders the Helm chart into the plain manifests
# (deploy/manifests, via scripts/manifests.sh; Helm is built from its Go module on first
# use) and builds both container images as OCI image layouts, without a container daemon:
#   build/images/navarch-control-plane   build/images/navarch-node   (tag: package.json's version)
# Push them with skopeo, e.g.
#   skopeo copy oci:build/images/navarch-node:0.1.0 docker://REGISTRY/navarch/node:0.1.0
# Needs Debian's apt-get and dpkg-deb for the base layer (glibc, the CA bundle).
#   sh scripts/images.sh [--out DIR] [--tag TAG]
set -eu
cd "$(dirname "$0")/.."
sh scripts/ensure-bun.sh
BUN=tools/bun/node_modules/.bin/bun
"$BUN" run scripts/build.ts
sh scripts/manifests.sh
"$BUN" run scripts/images.ts "$@"
