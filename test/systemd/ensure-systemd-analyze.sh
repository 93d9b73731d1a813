#!/bin/sh
# systemd-analyze for the unit-file tests: installs Debian's systemd package when it is
# missing (apt-get, needs root as in CI). Exits non-zero with the reason when it cannot.
set -eu
command -v systemd-analyze >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "ensure-systemd-analyze: systemd-analyze is missing; install the systemd package (apt-get install systemd) or run the tests as root" >&2
  exit 1
fi
command -v apt-get >/dev/null 2>&1 || { echo "ensure-systemd-analyze: systemd-analyze is missing and there is no apt-get here to install it" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
exec 9>/tmp/navarch-test-apt.lock
command -v flock >/dev/null 2>&1 && flock 9
if ! { apt-get update -q && apt-get install -y -q --no-install-recommends systemd; } >"$log" 2>&1; then
  echo "ensure-systemd-analyze: apt-get install systemd failed:" >&2
  tail -n 20 "$log" >&2
  rm -f "$log"
  exit 1
fi
rm -f "$log"
command -v systemd-analyze >/dev/null 2>&1 || { echo "ensure-systemd-analyze: systemd installed but systemd-analyze is missing" >&2; exit 1; }
