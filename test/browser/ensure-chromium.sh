#!/bin/sh
# Installs Debian's chromium for the dashboard's browser tests when it is missing
# (a fresh machine; scripts/apt-install.sh needs root, as CI runs). Does nothing when
# /usr/bin/chromium is there.
#   sh test/browser/ensure-chromium.sh
set -eu
[ -x /usr/bin/chromium ] && exit 0
sh "$(dirname "$0")/../../scripts/apt-install.sh" ensure-chromium chromium fonts-dejavu-core
[ -x /usr/bin/chromium ] || { echo "ensure-chromium: apt-get ran but /usr/bin/chromium is absent" >&2; exit 1; }
