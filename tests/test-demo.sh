#!/bin/sh
# test-demo.sh: the bundled demo runs and prints what the reference
# document's example prints.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
set -u

tool=$1
out=$(mktemp)
trap 'rm -f "$out"' EXIT

echo "1..5"

LANGUAGE= LC_ALL=C.UTF-8 timeout 30 "$tool" demo --interval 0.05 --rounds 3 >"$out" 2>&1
status=$?
if [ $status -eq 0 ]; then echo "ok 1 - demo exits 0"; else echo "not ok 1 - demo exited $status"; sed 's/^/# /' "$out"; fi

count() { grep -c -- "$1" "$out"; }

n=$(count "\[child\] Passive receive: I am liteyuki main process passive")
[ "$n" -eq 3 ] && echo "ok 2 - 3 passive receives" || echo "not ok 2 - $n passive receives"

n=$(count "\[child\] Active receive: I am liteyuki main process active")
[ "$n" -eq 3 ] && echo "ok 3 - 3 active receives" || echo "not ok 3 - $n active receives"

n=$(count "\[main\] Reply from the child: got [123]$")
[ "$n" -eq 3 ] && echo "ok 4 - 3 replies from the child" || echo "not ok 4 - $n replies"

# the same in Chinese (gettext reads LANGUAGE under C.UTF-8)
LANGUAGE=zh_CN LC_ALL=C.UTF-8 timeout 30 "$tool" demo --interval 0.05 --rounds 1 >"$out" 2>&1
if grep -q "被动接收：I am liteyuki main process passive" "$out" && grep -q "主动接收：" "$out"; then
  echo "ok 5 - the demo speaks Chinese with LANGUAGE=zh_CN"
else
  echo "not ok 5 - no Chinese output"; sed 's/^/# /' "$out"
fi
