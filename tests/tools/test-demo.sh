#!/bin/sh
# test-demo.sh: the bundled demo runs and prints what the reference
# document's example prints, from a C child and a Python child.
#
# Usage: test-demo.sh LITEYUKI-COMM TYPELIB-DIR
#
# SPDX-License-Identifier: LGPL-2.1-or-later
set -u

tool=$1
typelib_dir=$2
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# the Python child needs the typelib: a build without introspection has
# the C child only
children="c python"
[ -f "$typelib_dir/Ly-1.typelib" ] || children="c"

n=0
ok () {
  n=$((n + 1))
  if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; sed 's/^/# /' "$out"; fi
}
count () { grep -c -- "$1" "$out"; }

echo "1..$((3 + 4 * $(echo $children | wc -w)))"

LANGUAGE= LC_ALL=C.UTF-8 timeout 60 "$tool" demo --interval 0.05 --rounds 3 >"$out" 2>&1
ok $? "demo exits 0"

for child in $children; do
  [ "$(count "\[$child\] Passive receive: I am liteyuki main process passive")" -eq 3 ]
  ok $? "$child: 3 passive receives"
  [ "$(count "\[$child\] Active receive: I am liteyuki main process active")" -eq 3 ]
  ok $? "$child: 3 active receives"
  [ "$(count "\[$child\] Storage: hub.round = 3, $child.received = 3")" -eq 1 ]
  ok $? "$child: read the hub's round and stored its count"
  [ "$(count "\[main\] Storage: $child.received = 3")" -eq 1 ]
  ok $? "$child: the hub read the child's count"
done

[ "$(count "Passive receive: (")" -eq 0 ]
ok $? "the string filter skipped the other messages"

# in Chinese (gettext reads LANGUAGE under C.UTF-8)
LANGUAGE=zh_CN LC_ALL=C.UTF-8 timeout 60 "$tool" demo --interval 0.05 --rounds 1 >"$out" 2>&1
grep -q "\[c\] 被动接收：I am liteyuki main process passive" "$out" && grep -q "\[main\] 完成" "$out"
ok $? "the demo speaks Chinese with LANGUAGE=zh_CN"
