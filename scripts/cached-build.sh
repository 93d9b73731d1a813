# Sourced (`. scripts/cached-build.sh`) by the scripts that build a test or bench tool from
# the Go module proxy into ~/.cache/navarch (never the repository). The caller sets BIN (what
# it prints), CACHE and LOCK (a lock file's name under CACHE) and defines `built` (true when
# BIN already holds the wanted version). This prints BIN and ends the caller when the tool is
# built, else puts Go on PATH (scripts/ensure-go.sh: the Go on PATH, or one fetched from the
# proxy) and takes LOCK, so two test runs on a fresh machine build once: the second waits
# and reuses the first's result.
: "${BIN:?}" "${CACHE:?}" "${LOCK:?}"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
if built; then
  echo "$BIN"
  exit 0
fi
PATH="$(sh "$NAVARCH_ROOT/scripts/ensure-go.sh"):$PATH"
mkdir -p "$CACHE"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE/$LOCK"
  flock 9
  if built; then
    echo "$BIN"
    exit 0
  fi
fi
started=$(date +%s)

# Makes and enters an empty Go module of our own under the cache (src-VERSION), so that
# `go install` / `go get` resolve the tool's dependencies as its own go.mod says.
#   enter_empty_module NAME VERSION
enter_empty_module() {
  SRC=$CACHE/src-$2
  mkdir -p "$SRC"
  cd "$SRC"
  [ -f go.mod ] || go mod init "example.local/navarch-$1" >&2
}
