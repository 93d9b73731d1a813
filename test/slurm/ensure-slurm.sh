#!/bin/sh
# What the Slurm tests need on this machine: Debian's Slurm (slurmctld, slurmd, slurmrestd,
# the client commands, the JWT plugin) and munge. Missing packages are installed (scripts/apt-install.sh: needs
# root, as CI runs). Exits non-zero with the reason when something is missing and
# cannot be installed; never skips silently. Nothing is started: the harness runs its own
# daemons with private paths.
#   sh test/slurm/ensure-slurm.sh
set -eu
missing=
[ -x /usr/sbin/slurmctld ] || missing="$missing slurmctld"
[ -x /usr/sbin/slurmd ] || missing="$missing slurmd"
[ -x /usr/sbin/slurmrestd ] || missing="$missing slurmrestd"
command -v scontrol >/dev/null 2>&1 || missing="$missing slurm-client"
[ -x /usr/sbin/munged ] || missing="$missing munge"
# slurmctld and the client commands take JWTs only with auth/jwt (a Recommends, not a Depends).
dpkg -s slurm-wlm-jwt-plugin >/dev/null 2>&1 || missing="$missing slurm-wlm-jwt-plugin"
[ -n "$missing" ] || exit 0

sh "$(dirname "$0")/../../scripts/apt-install.sh" ensure-slurm $missing
for bin in /usr/sbin/slurmctld /usr/sbin/slurmd /usr/sbin/slurmrestd /usr/sbin/munged; do
  [ -x "$bin" ] || { echo "ensure-slurm: apt-get ran but $bin is missing" >&2; exit 1; }
done
