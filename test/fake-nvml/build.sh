#!/bin/sh
# Builds the fake libnvidia-ml.so.1 variants and the offsets program into build/:
#   build/libnvidia-ml.so.1        recent driver (FAKE_NVML_VERSION=580)
#   build/r535/libnvidia-ml.so.1   -DFAKE_NVML_VERSION=535: no symbol newer than R535
#   build/r470/libnvidia-ml.so.1   -DFAKE_NVML_VERSION=470: no ClocksEventReasons, no fabric info
#   build/offsets                  prints sizeof/offsetof of the structs the binding reads (JSON)
# Idempotent: does nothing when every output is newer than every source. Outputs are written
# to a temporary name and renamed, so a concurrent reader never sees a half-written file.
# Exits non-zero with the compiler's message when a build fails. CC overrides gcc.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out="$here/build"
cc=${CC:-gcc}
sources="$here/fake_nvml.c $here/fake_nvml.h $here/offsets.c $here/build.sh"
cflags="-std=gnu11 -O1 -g -Wall -Wextra -Werror"
libflags="-fPIC -shared -pthread -fvisibility=hidden -Wl,-soname,libnvidia-ml.so.1 -Wl,--no-undefined -Wl,-Bsymbolic"

# name | output | command arguments
targets="full|$out/libnvidia-ml.so.1|$libflags -DFAKE_NVML_VERSION=580 $here/fake_nvml.c
r535|$out/r535/libnvidia-ml.so.1|$libflags -DFAKE_NVML_VERSION=535 $here/fake_nvml.c
r470|$out/r470/libnvidia-ml.so.1|$libflags -DFAKE_NVML_VERSION=470 $here/fake_nvml.c
offsets|$out/offsets|$here/offsets.c"

up_to_date() {
  [ -f "$1" ] || return 1
  for s in $sources; do
    [ "$1" -nt "$s" ] || return 1
  done
  return 0
}

# A machine with only Node.js and npm has no C compiler: install Debian's gcc (as root),
# or say in one line what is missing. Only when something needs building.
if ! command -v "$cc" >/dev/null 2>&1; then
  stale=0
  for d in "$out/libnvidia-ml.so.1" "$out/r535/libnvidia-ml.so.1" "$out/r470/libnvidia-ml.so.1" "$out/offsets"; do
    up_to_date "$d" || stale=1
  done
  if [ "$stale" = 1 ]; then
    [ -z "${CC:-}" ] || { echo "fake-nvml build: the compiler CC=$CC is not on PATH" >&2; exit 1; }
    sh "$here/../../scripts/apt-install.sh" "fake-nvml build (a C compiler for the fake libnvidia-ml)" gcc libc6-dev
  fi
fi

mkdir -p "$out/r535" "$out/r470"
pids=""
old_ifs=$IFS
IFS='
'
for t in $targets; do
  IFS=$old_ifs
  name=${t%%|*}
  rest=${t#*|}
  dest=${rest%%|*}
  args=${rest#*|}
  if ! up_to_date "$dest"; then
    tmp="$dest.tmp.$$"
    # shellcheck disable=SC2086 # word splitting of the flags is intended
    ( $cc $cflags -I"$here" -o "$tmp" $args >"$out/$name.log" 2>&1 && mv -f "$tmp" "$dest" \
      || { rm -f "$tmp"; exit 1; } ) &
    pids="$pids $!:$name"
  fi
  IFS='
'
done
IFS=$old_ifs

failed=0
for p in $pids; do
  name=${p#*:}
  if ! wait "${p%%:*}"; then
    echo "fake-nvml build: $name failed:" >&2
    cat "$out/$name.log" >&2
    failed=1
  fi
  rm -f "$out/$name.log"
done
exit $failed
