#!/bin/sh
# Installs Schemathesis (from PyPI, a pinned version) into a virtual environment in a
# version-keyed cache outside the repo (never committed), and prints the path of its `st`
# command on its last line. Idempotent: nothing happens when the cache holds this version.
#   sh test/schemathesis/ensure-schemathesis.sh
# Needs python3 with venv (Debian's python3-venv; installed when missing and run as root).
# Two runs at once are safe: a lock serialises them, and each builds in a temp directory
# renamed into place.
set -eu
V=${NAVARCH_SCHEMATHESIS_VERSION:-4.32.5}
CACHE=${NAVARCH_SCHEMATHESIS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/navarch/schemathesis}
DIR=$CACHE/$V
ST=$DIR/venv/bin/st

works() { [ -x "$1" ] && "$1" --version 2>/dev/null | grep -q "$V"; }

if works "$ST"; then
  echo "$ST"
  exit 0
fi
command -v python3 >/dev/null 2>&1 || sh "$(dirname "$0")/../../scripts/apt-install.sh" ensure-schemathesis python3
python3 -c 'import venv, ensurepip' 2>/dev/null || sh "$(dirname "$0")/../../scripts/apt-install.sh" ensure-schemathesis python3-venv
mkdir -p "$CACHE"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE/.install-$V.lock"
  flock 9
  if works "$ST"; then
    echo "$ST"
    exit 0
  fi
fi
if [ -e "$DIR" ]; then
  mv "$DIR" "$CACHE/.broken-$V-$$"
  rm -rf "$CACHE/.broken-$V-$$"
fi
started=$(date +%s)
TMP=$(mktemp -d "$CACHE/.tmp-$V-XXXXXX")
log=$TMP.log
trap 'rm -rf "$TMP" "$log"' EXIT
echo "ensure-schemathesis: installing schemathesis==$V from PyPI into $DIR" >&2
# A venv records its own path: build it where it will live, under the temp name's sibling.
if ! { python3 -m venv "$TMP/venv" && "$TMP/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input "schemathesis==$V"; } >"$log" 2>&1; then
  echo "ensure-schemathesis: pip install schemathesis==$V failed:" >&2
  tail -n 20 "$log" >&2
  exit 1
fi
# Scripts in a venv name its interpreter by absolute path; move it, then point them at the new place.
mv -T "$TMP" "$DIR"
trap 'rm -f "$log"' EXIT
for f in "$DIR"/venv/bin/*; do
  [ -f "$f" ] && head -c 2 "$f" | grep -q '#!' && sed -i "1s|$TMP/venv|$DIR/venv|" "$f"
done
sed -i "s|$TMP/venv|$DIR/venv|g" "$DIR/venv/pyvenv.cfg" "$DIR/venv/bin/activate" 2>/dev/null || true
works "$ST" || { echo "ensure-schemathesis: $ST does not run after installing:" >&2; "$ST" --version >&2 || true; exit 1; }
echo "ensure-schemathesis: installed $("$ST" --version) in $(( $(date +%s) - started )) s" >&2
echo "$ST"
