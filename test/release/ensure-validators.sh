#!/bin/sh
# Installs the reference checkers of a release's SBOM and provenance (from PyPI, pinned) into a
# virtual environment in a version-keyed cache outside the repo (never committed), and prints
# the path of its python on its last line. Idempotent; two runs at once build once (a lock).
#   cyclonedx-python-lib: CycloneDX's own library, whose strict validator holds the 1.6 JSON schema;
#   in-toto-attestation:  the in-toto Attestation Framework's bindings (Statement v1, SLSA Provenance v1).
#   sh test/release/ensure-validators.sh
set -eu
PACKAGES="cyclonedx-python-lib[json-validation]==11.12.0 in-toto-attestation==0.9.3"
V=cdx-11.12.0-intoto-0.9.3
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/navarch/release-validators
DIR=$CACHE/$V
PY=$DIR/venv/bin/python

works() { [ -x "$PY" ] && "$PY" -c 'import cyclonedx.validation.json, in_toto_attestation.predicates.provenance.v1.provenance_pb2' 2>/dev/null; }

if works; then
  echo "$PY"
  exit 0
fi
here=$(dirname "$0")
command -v python3 >/dev/null 2>&1 || sh "$here/../../scripts/apt-install.sh" ensure-validators python3
python3 -c 'import venv, ensurepip' 2>/dev/null || sh "$here/../../scripts/apt-install.sh" ensure-validators python3-venv
mkdir -p "$CACHE"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE/.install-$V.lock"
  flock 9
  if works; then
    echo "$PY"
    exit 0
  fi
fi
rm -rf "$DIR"
TMP=$(mktemp -d "$CACHE/.tmp-$V-XXXXXX")
log=$TMP.log
trap 'rm -rf "$TMP" "$log"' EXIT
echo "ensure-validators: installing $PACKAGES from PyPI into $DIR" >&2
# shellcheck disable=SC2086 # the package list is words
if ! { python3 -m venv "$TMP/venv" && "$TMP/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input $PACKAGES; } >"$log" 2>&1; then
  echo "ensure-validators: pip install failed:" >&2
  tail -n 20 "$log" >&2
  exit 1
fi
# Only the venv's python is used, and it finds its packages from where it lies: moving is safe.
mv -T "$TMP" "$DIR"
works || { echo "ensure-validators: $PY cannot import the validators after installing" >&2; exit 1; }
echo "$PY"
