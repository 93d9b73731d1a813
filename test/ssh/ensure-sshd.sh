#!/bin/sh
# What the SSH tests need on this machine: OpenSSH's server (/usr/sbin/sshd) and
# ssh-keygen, and curl (the agent installer downloads with it). Missing Debian packages
# are installed (scripts/apt-install.sh: needs root, as CI runs). Exits non-zero with
# the reason when something is missing and cannot be installed; never skips silently.
#   sh test/ssh/ensure-sshd.sh
set -eu
missing=
[ -x /usr/sbin/sshd ] || missing="$missing openssh-server"
command -v ssh-keygen >/dev/null 2>&1 || missing="$missing openssh-client"
command -v curl >/dev/null 2>&1 || missing="$missing curl"
command -v setsid >/dev/null 2>&1 || missing="$missing util-linux"
[ -n "$missing" ] || exit 0
sh "$(dirname "$0")/../../scripts/apt-install.sh" ensure-sshd $missing
[ -x /usr/sbin/sshd ] || { echo "ensure-sshd: openssh-server installed but /usr/sbin/sshd is missing" >&2; exit 1; }
