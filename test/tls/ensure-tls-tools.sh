#!/bin/sh
# What the TLS tests need on this machine: openssl (test certificates, `openssl s_client`),
# curl (a client, and the installer's downloader) and iproute2 (`ip netns`, for the
# end-to-end test's network namespace). Missing Debian packages are installed
# (scripts/apt-install.sh: needs root, as CI runs). Exits non-zero with the reason when
# something is missing and cannot be installed; never skips silently.
#   sh test/tls/ensure-tls-tools.sh
set -eu
missing=
command -v openssl >/dev/null 2>&1 || missing="$missing openssl"
command -v curl >/dev/null 2>&1 || missing="$missing curl"
command -v ip >/dev/null 2>&1 || missing="$missing iproute2"
[ -n "$missing" ] || exit 0
sh "$(dirname "$0")/../../scripts/apt-install.sh" ensure-tls-tools $missing
