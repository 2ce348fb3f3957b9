#!/bin/sh
# test-manpages.sh: the manual pages render without warnings (man -l,
# groff -ww), and liteyuki-comm(1) names every subcommand of
# `liteyuki-comm --help` and every option of every subcommand's --help.
#
# Usage: test-manpages.sh TOOL PAGE.1 PAGE.5
#
# SPDX-License-Identifier: LGPL-2.1-or-later
set -u

tool=$1
page1=$2
page5=$3
n=0
failed=0

ok () {
  n=$((n + 1))
  if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; failed=1; fi
}

render () {
  MANWIDTH=200 LC_ALL=C.UTF-8 man -l "$1" 2>/dev/null | col -b
}

for page in "$page1" "$page5"; do
  warnings=$(groff -man -ww -z "$page" 2>&1)
  [ -z "$warnings" ]; ok $? "$(basename "$page") renders without warnings${warnings:+: $warnings}"
  render "$page" | grep -q "NAME"; ok $? "man -l renders $(basename "$page")"
done

text=$(render "$page1")
commands=$(LC_ALL=C "$tool" --help | sed -n 's/^  \([a-z][a-z-]*\)  .*/\1/p')
[ -n "$commands" ]; ok $? "--help lists subcommands"
for command in $commands; do
  echo "$text" | grep -q "liteyuki-comm $command\|^ *$command\b\|\b$command \(NAME\|TOPIC\|CHANNEL\|\[\)"
  ok $? "subcommand $command is in liteyuki-comm(1)"
  options=$(LC_ALL=C "$tool" "$command" --help | grep -o -- '-\(-[a-z][a-z-]*\|[a-z]\)\b' | sort -u)
  for option in $options; do
    echo "$text" | grep -q -- "$option"
    ok $? "option $option of $command is in liteyuki-comm(1)"
  done
done

echo "1..$n"
exit $failed
