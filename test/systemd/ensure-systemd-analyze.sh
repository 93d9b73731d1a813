#!/bin/sh
# systemd-analyze for the unit-file tests: installs Debian's systemd package when it is
# missing (scripts/apt-install.sh: needs root, as CI runs). Exits non-zero with the reason
# when it cannot.
set -eu
command -v systemd-analyze >/dev/null 2>&1 && exit 0
sh "$(dirname "$0")/../../scripts/apt-install.sh" ensure-systemd-analyze systemd
command -v systemd-analyze >/dev/null 2>&1 || { echo "ensure-systemd-analyze: systemd installed but systemd-analyze is missing" >&2; exit 1; }
