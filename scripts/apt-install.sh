#!/bin/sh
# Installs the Debian packages a build or a test needs, the one way every script does it:
# as root through apt-get, one installer at a time (test files start together), finishing a
# half-configured dpkg (an interrupted install) before trying again. Exits non-zero with
# the reason and apt's last lines when it cannot; never skips silently.
#   sh scripts/apt-install.sh WHO PACKAGE...     (WHO names the caller in messages)
set -eu
who=$1
shift
[ $# -gt 0 ] || exit 0
if [ "$(id -u)" != 0 ]; then
  echo "$who: needs $*; install it (apt-get install $*) or run as root" >&2
  exit 1
fi
command -v apt-get >/dev/null 2>&1 || { echo "$who: needs $* and there is no apt-get here to install it" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
exec 9>/tmp/navarch-test-apt.lock
command -v flock >/dev/null 2>&1 && flock 9
install() { apt-get install -y -q --no-install-recommends "$@"; }
if ! { apt-get update -q && { install "$@" || { dpkg --configure -a && install "$@"; }; }; } >"$log" 2>&1; then
  echo "$who: apt-get install $* failed:" >&2
  tail -n 20 "$log" >&2
  rm -f "$log"
  exit 1
fi
rm -f "$log"
echo "$who: installed $*" >&2
