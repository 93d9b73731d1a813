#!/bin/sh
# The full test suite: installs what it needs (Bun, packages; the Kubernetes, SSH,
# sqld and browser harnesses build or install theirs on first use), then runs every
# test file with bun test, type checking included (test/typecheck.test.ts). Ends with
# one line "N passed, N failed[, N skipped]" from bun test's own counts, and exits
# non-zero when any test failed or bun test itself did.
#   sh scripts/test.sh [bun test args...]
set -eu
cd "$(dirname "$0")/.."
sh scripts/ensure-bun.sh
PATH="$PWD/tools/bun/node_modules/.bin:$PATH"
export PATH

log=$(mktemp)
status_file=$(mktemp)
trap 'rm -f "$log" "$status_file"' EXIT
# bun's own exit status, not tee's: a pipeline's status is its last command's.
{
  set +e
  bun test --timeout 60000 "$@" 2>&1
  echo "$?" >"$status_file"
} | tee "$log"
status=$(cat "$status_file")
# bun test's summary lines look like " 42 pass", " 0 fail", " 3 skip".
count() { sed -n "s/^ *\([0-9][0-9]*\) $1\$/\1/p" "$log" | tail -n 1; }
passed=$(count pass); failed=$(count fail); skipped=$(count skip)
passed=${passed:-0}; failed=${failed:-0}
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  # bun failed outside any test (a file that does not load, no tests found): count it.
  failed=1
fi
if [ "$failed" -ne 0 ] && [ "$status" -eq 0 ]; then status=1; fi
line="$passed passed, $failed failed"
[ -n "$skipped" ] && line="$line, $skipped skipped"
echo "$line"
exit "$status"
