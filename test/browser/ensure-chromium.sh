#!/bin/sh
# Installs Debian's chromium for the dashboard's browser tests when it is missing
# (a fresh machine; CI runs as root). Does nothing when /usr/bin/chromium is there.
#   sh test/browser/ensure-chromium.sh
set -eu
[ -x /usr/bin/chromium ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-chromium: /usr/bin/chromium is missing and this is not root; run: apt-get install -y chromium" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
install() { apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core >/dev/null; }
apt-get update -q >/dev/null
# A half-configured dpkg (an earlier interrupted install) is finished first, then tried again.
install || { dpkg --configure -a >/dev/null; install; }
[ -x /usr/bin/chromium ] || { echo "ensure-chromium: apt-get ran but /usr/bin/chromium is absent" >&2; exit 1; }
