#!/bin/sh
# test-dbus.sh: a hub's Storage and Manager on the session bus and on a
# private server, driven with gdbus.  Run under dbus-run-session.
#
# Usage: test-dbus.sh BUILDDIR
#
# SPDX-License-Identifier: LGPL-2.1-or-later
set -u

builddir=$1
hub="$builddir/ly-test-hub"
name=icu.liteyuki.Comm1.Test
storage=/icu/liteyuki/Comm1/Storage
manager=/icu/liteyuki/Comm1/Manager
work=$(mktemp -d)

trap 'kill $hub_pid $server_pid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

. "$(dirname "$0")/../helpers/tap-lib.sh"

echo "1..24"

G_TEST_BUILDDIR=$builddir "$hub" 2 --bus-name $name >"$work/hub" 2>"$work/hub-err" &
hub_pid=$!
wait_for_line ready "$work/hub"
check "the hub owns its name" gdbus wait --session --timeout 10 $name

expect "introspection shows the Storage interface" "interface icu.liteyuki.Comm1.Storage" \
  gdbus introspect --session --dest $name --object-path $storage
expect "introspection shows CompareAndSet" "CompareAndSet(in  s key," \
  gdbus introspect --session --dest $name --object-path $storage
expect "introspection shows the Manager interface" "interface icu.liteyuki.Comm1.Manager" \
  gdbus introspect --session --dest $name --object-path $manager

check "Set from the shell" gdbus call --session --dest $name --object-path $storage \
  --method icu.liteyuki.Comm1.Storage.Set greeting "<'hello'>"
expect "Get returns what was set" "(<'hello'>,)" \
  gdbus call --session --dest $name --object-path $storage --method icu.liteyuki.Comm1.Storage.Get greeting
wait_for_line "changed greeting 'hello'" "$work/hub"
expect "the hub's LyStorage saw the change" "changed greeting 'hello'" cat "$work/hub"
check "CompareAndSet with the right expectation" gdbus call --session --dest $name --object-path $storage \
  --method icu.liteyuki.Comm1.Storage.CompareAndSet greeting "[<'hello'>]" "[<'bye'>]"
expect "ListKeys" "(['greeting'],)" \
  gdbus call --session --dest $name --object-path $storage --method icu.liteyuki.Comm1.Storage.ListKeys
expect "GetAll" "({'greeting': <'bye'>},)" \
  gdbus call --session --dest $name --object-path $storage --method icu.liteyuki.Comm1.Storage.GetAll

expect "a missing key is NoSuchKey" "icu.liteyuki.Comm1.Error.Storage.NoSuchKey" \
  gdbus call --session --dest $name --object-path $storage --method icu.liteyuki.Comm1.Storage.Get missing
expect "an empty key is InvalidKey" "icu.liteyuki.Comm1.Error.Storage.InvalidKey" \
  gdbus call --session --dest $name --object-path $storage --method icu.liteyuki.Comm1.Storage.Set "" "<1>"
expect "a wrong signature is refused" "org.freedesktop.DBus.Error.InvalidArgs" \
  gdbus call --session --dest $name --object-path $storage --method icu.liteyuki.Comm1.Storage.Get 42 7
expect "an unknown method is refused" "org.freedesktop.DBus.Error.UnknownMethod" \
  gdbus call --session --dest $name --object-path $storage --method icu.liteyuki.Comm1.Storage.Explode
expect "the hub still serves" "(<'bye'>,)" \
  gdbus call --session --dest $name --object-path $storage --method icu.liteyuki.Comm1.Storage.Get greeting

pid0=$(sed -n 's/^pid //p' "$work/hub" | head -1)
expect "ListProcesses shows child0 with the hub's pid" "('child0', $pid0, 'running', uint32 0)" \
  gdbus call --session --dest $name --object-path $manager --method icu.liteyuki.Comm1.Manager.ListProcesses
expect "the Channels property" "'child0-active'" \
  gdbus call --session --dest $name --object-path $manager --method org.freedesktop.DBus.Properties.Get \
  icu.liteyuki.Comm1.Manager Channels
check "Stop child0" gdbus call --session --dest $name --object-path $manager \
  --method icu.liteyuki.Comm1.Manager.Stop child0
expect "the Processes property shows it stopped" "('child0', 0, 'stopped', uint32 0)" \
  gdbus call --session --dest $name --object-path $manager --method org.freedesktop.DBus.Properties.Get \
  icu.liteyuki.Comm1.Manager Processes
expect "an unknown target is UnknownTarget" "icu.liteyuki.Comm1.Error.Process.UnknownTarget" \
  gdbus call --session --dest $name --object-path $manager --method icu.liteyuki.Comm1.Manager.Start nobody
check "Restart child1" gdbus call --session --dest $name --object-path $manager \
  --method icu.liteyuki.Comm1.Manager.Restart child1

kill -TERM $hub_pid
wait $hub_pid
ok $? "the hub exits 0 on SIGTERM"

# A private server, for when there is no session bus: same user only.
G_TEST_BUILDDIR=$builddir "$hub" 1 --server >"$work/server" 2>"$work/server-err" &
server_pid=$!
wait_for_line ready "$work/server"
address=$(sed -n 's/^address //p' "$work/server")
check "the private server serves its user" gdbus call --address "$address" --dest icu.liteyuki.Comm1 --object-path $storage \
  --method icu.liteyuki.Comm1.Storage.Set private "<true>"
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
  if setpriv --reuid=65534 --regid=65534 --clear-groups gdbus call --address "$address" --dest icu.liteyuki.Comm1 \
       --object-path $storage --method icu.liteyuki.Comm1.Storage.ListKeys >"$work/out" 2>&1; then
    ok 1 "another user is refused"; sed 's/^/# /' "$work/out"
  else
    ok 0 "another user is refused"
  fi
else
  n=$((n + 1)); echo "ok $n - another user is refused # SKIP needs root and setpriv"
fi
kill -TERM $server_pid
wait $server_pid

exit $failed
