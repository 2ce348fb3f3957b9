#!/bin/sh
# run-suite.sh: the whole test suite, as README.md and .ci/run run it.
#
#   1. the normal build: every test (C, Python, GJS, the command);
#   2. an ASan+UBSan build: the C tests, the command and the fuzz targets
#      over their corpus and mutations of it, leak checks on;
#   3. the C tests under valgrind memcheck.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
set -eu

cd "$(dirname "$0")/.."

setup () {
  dir=$1
  shift
  if [ -f "$dir/build.ninja" ]; then
    meson setup --reconfigure "$dir" "$@" >/dev/null
  else
    meson setup "$dir" "$@" >/dev/null
  fi
}

echo "== tests (build/)"
setup build -Ddocumentation=enabled -Dvapi=enabled -Dredis=enabled
meson test -C build --print-errorlogs

echo "== C tests under AddressSanitizer and UndefinedBehaviorSanitizer (build-asan/)"
setup build-asan -Db_sanitize=address,undefined -Dintrospection=false
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  meson test -C build-asan --suite c --suite tools --suite fuzz --print-errorlogs

if command -v valgrind >/dev/null 2>&1; then
  echo "== C tests under valgrind (build/, --setup valgrind)"
  meson test -C build --setup valgrind --print-errorlogs
fi
