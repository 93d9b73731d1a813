#!/bin/sh
# What the SSH tests need on this machine: OpenSSH's server (/usr/sbin/sshd) and
# ssh-keygen, and curl (the agent installer downloads with it). Missing Debian packages
# are installed with apt-get, which needs root (CI runs as root). Exits non-zero with
# the reason when something is missing and cannot be installed; never skips silently.
#   sh test/ssh/ensure-sshd.sh
set -eu
missing=
[ -x /usr/sbin/sshd ] || missing="$missing openssh-server"
command -v ssh-keygen >/dev/null 2>&1 || missing="$missing openssh-client"
command -v curl >/dev/null 2>&1 || missing="$missing curl"
command -v setsid >/dev/null 2>&1 || missing="$missing util-linux"
[ -n "$missing" ] || exit 0

if [ "$(id -u)" != 0 ]; then
  echo "ensure-sshd: the SSH tests need${missing}; install it (apt-get install${missing}) or run the tests as root" >&2
  exit 1
fi
command -v apt-get >/dev/null 2>&1 || { echo "ensure-sshd: need${missing} and there is no apt-get here to install it" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
# One installer at a time (test files may start together).
exec 9>/tmp/navarch-test-apt.lock
command -v flock >/dev/null 2>&1 && flock 9
if ! { apt-get update -q && apt-get install -y -q --no-install-recommends $missing; } >"$log" 2>&1; then
  echo "ensure-sshd: apt-get install${missing} failed:" >&2
  tail -n 20 "$log" >&2
  rm -f "$log"
  exit 1
fi
rm -f "$log"
[ -x /usr/sbin/sshd ] || { echo "ensure-sshd: openssh-server installed but /usr/sbin/sshd is missing" >&2; exit 1; }
echo "ensure-sshd: installed${missing}" >&2
