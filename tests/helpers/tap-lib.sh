# tap-lib.sh: TAP output for the shell tests; sourced, with $work set to
# a scratch directory.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

n=0
failed=0

# private servers put their socket and address file here, not in the
# runtime directory of whoever runs the tests
export XDG_RUNTIME_DIR="$work/runtime"
mkdir -p -m 700 "$XDG_RUNTIME_DIR"

# ok STATUS DESCRIPTION
ok () {
  n=$((n + 1))
  if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; failed=1; fi
}

# check DESCRIPTION COMMAND...: passes when the command succeeds
check () {
  what=$1; shift
  "$@" >"$work/out" 2>&1
  status=$?
  ok $status "$what"
  [ $status = 0 ] || sed 's/^/# /' "$work/out"
}

# expect DESCRIPTION TEXT COMMAND...: passes when the output holds TEXT
expect () {
  what=$1; text=$2; shift 2
  "$@" >"$work/out" 2>&1
  if grep -qF -- "$text" "$work/out"; then ok 0 "$what"; else ok 1 "$what"; sed 's/^/# /' "$work/out"; fi
}

# expect_output DESCRIPTION TEXT COMMAND...: passes when the command
# succeeds and its standard output is exactly TEXT
expect_output () {
  what=$1; text=$2; shift 2
  "$@" >"$work/out" 2>"$work/err"
  status=$?
  if [ $status = 0 ] && [ "$(cat "$work/out")" = "$text" ]; then
    ok 0 "$what"
  else
    ok 1 "$what"
    echo "# expected (status 0): $text"
    echo "# got (status $status):"
    sed 's/^/# /' "$work/out" "$work/err"
  fi
}

# expect_failure DESCRIPTION STATUS TEXT COMMAND...: passes when the
# command exits with STATUS and prints one line holding TEXT on stderr
expect_failure () {
  what=$1; want=$2; text=$3; shift 3
  "$@" >"$work/out" 2>"$work/err"
  status=$?
  if [ $status = "$want" ] && [ "$(wc -l <"$work/err")" = 1 ] && grep -qF -- "$text" "$work/err"; then
    ok 0 "$what"
  else
    ok 1 "$what"
    echo "# expected status $want and one line with: $text"
    echo "# got status $status:"
    sed 's/^/# /' "$work/out" "$work/err"
  fi
}

# wait_for_line TEXT FILE: waits up to 10 s for FILE to hold TEXT
wait_for_line () {
  i=0
  while ! grep -q -- "$1" "$2" 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 200 ] && return 1; sleep 0.05
  done
}

# wait_until COMMAND...: waits up to 10 s for COMMAND to succeed
wait_until () {
  i=0
  while ! "$@" >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -gt 200 ] && return 1; sleep 0.05
  done
}
