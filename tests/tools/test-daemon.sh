#!/bin/sh
# test-daemon.sh: `liteyuki-comm run` against a user's mistakes: a target
# that cannot be started, a second hub, a configuration with several
# errors; how exits are reported; the small client commands.  Run under
# dbus-run-session.
#
# Usage: test-daemon.sh LITEYUKI-COMM
#
# SPDX-License-Identifier: LGPL-2.1-or-later
set -u

tool=$1
work=$(mktemp -d)
hub_pid=

trap '[ -n "$hub_pid" ] && kill $hub_pid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

. "$(dirname "$0")/../helpers/tap-lib.sh"

export LANGUAGE= LC_ALL=C.UTF-8

lc () { "$tool" "$@"; }

# the Python children need the typelib (not in a build without
# introspection, such as the sanitizers')
python_ly=no
/usr/bin/python3 -c "import gi; gi.require_version('Ly', '1'); from gi.repository import Ly" 2>/dev/null && python_ly=yes

start_hub () {
  "$tool" run "$@" >>"$work/hub.log" 2>&1 &
  hub_pid=$!
  gdbus wait --session --timeout 10 icu.liteyuki.Comm1
}

stop_hub () {
  kill -TERM $hub_pid
  wait $hub_pid
  hub_status=$?
  hub_pid=
}

state_of () { lc ps | awk -v name="$1" '$1 == name { print $3 }'; }

# every error of a configuration, in the order of the file --------------------

cat >"$work/bad.conf" <<END
[hub]
StopTimeout=nan

[target a]
Exec=/bin/true
Environment=1FOO=x

[target a]
Restart=sometimes

[target b]
Exec=python3.99 nothing.py
StopTimeout=-3
Bogus=1
END
lc run --check "$work/bad.conf" >/dev/null 2>"$work/check.err"
ok $([ $? = 1 ] && echo 0 || echo 1) "--check of a file with seven mistakes exits 1"
expect_output "…and names all seven, a line each, in the order of the file" "2
6
8
9
12
13
14" sh -c "sed -n 's/^liteyuki-comm: [^:]*bad.conf:\([0-9]*\):.*/\1/p' '$work/check.err'"
expect "NaN is not a number of seconds" "“nan” is not a number of seconds" cat "$work/check.err"
expect "a group given twice" "[target a]: given again (first on line 4)" cat "$work/check.err"
expect "an environment variable that starts with a digit" "“1FOO=x” is not of the form NAME=VALUE" cat "$work/check.err"
expect "--check names an Exec that cannot be run" \
  "key “Exec” of [target b]: “python3.99” is not a program that can be run" cat "$work/check.err"

# a target that cannot be started takes nothing else down -------------------

cat >"$work/hub.conf" <<END
[hub]
StopTimeout=2

[target missing]
Exec=/nonexistent/python3.99 nothing.py
Restart=on-failure

[target good]
Exec=/bin/sh -c 'echo started >>"$work/good.log"; exec sleep 300'
StopTimeout=1

[target crasher]
Exec=/bin/sh -c 'echo crash >>"$work/crasher.log"; kill -SEGV \$\$'
Restart=never
END
start_hub "$work/hub.conf" --storage-file "$work/storage.db" --verbose
ok $? "the hub runs with a target that cannot be started"
wait_for_line started "$work/good.log"
ok $? "the other target started"
expect "the one that cannot start is reported" "Could not start “missing”" cat "$work/hub.log"
wait_until sh -c "[ \"\$($tool ps | awk '\$1 == \"missing\" { print \$3 }')\" = failed ]"
ok $? "…retried under its restart policy, then given up (failed)"
expect_output "the good one still runs" "running" state_of good
check "the storage works" lc storage set kept "'across the restart'"

# how an exit is reported
wait_for_line "crasher crashed: killed by signal 11" "$work/hub.log"
ok $? "a crash says which signal killed it"

# a second hub owns nothing and starts nothing
lc run "$work/hub.conf" >"$work/second.out" 2>"$work/second.err"
ok $([ $? = 1 ] && echo 0 || echo 1) "a second hub with the same configuration exits 1"
expect "…saying why" "cannot own the name icu.liteyuki.Comm1 on the session bus" cat "$work/second.err"
expect_output "…without starting a second copy of any target" "1" sh -c "wc -l <'$work/good.log'"

gdbus monitor --session --dest icu.liteyuki.Comm1 >"$work/monitor" 2>&1 &
monitor_pid=$!
wait_for_line "is owned by" "$work/monitor"
check "stop one target" lc stop good
wait_for_line "good stopped on request" "$work/hub.log"
ok $? "a requested stop is reported as such"
wait_for_line "ProcessExited ('good', 15, 'stopped', false)" "$work/monitor"
ok $? "…and so in D-Bus ProcessExited, with no restart pending"
kill $monitor_pid

stop_hub
ok $hub_status "SIGTERM ends the hub with status 0"
expect "the storage file was written" "across the restart" cat "$work/storage.db"

# the storage file against another user's traps ------------------------------

expect_output "the storage file is created with mode 0600" "600" stat -c %a "$work/storage.db"
printf '[target idle]\nExec=/bin/sh -c "exec sleep 300"\nStopTimeout=1\n' >"$work/idle.conf"
ln -s "$work/storage.db" "$work/link.db"
expect_failure "a storage file that is a symbolic link is refused" 1 "link.db is a symbolic link: refused" \
  timeout 10 "$tool" run "$work/idle.conf" --storage-file "$work/link.db"
ln -s /dev/zero "$work/zero.db"
expect_failure "…also one to /dev/zero" 1 "zero.db is a symbolic link: refused" \
  timeout 10 "$tool" run "$work/idle.conf" --storage-file "$work/zero.db"
expect_failure "a device is not a storage file" 1 "/dev/zero is not a regular file: refused" \
  timeout 10 "$tool" run "$work/idle.conf" --storage-file /dev/zero
mkfifo "$work/fifo.db"
expect_failure "a FIFO neither blocks nor is read" 1 "fifo.db is not a regular file: refused" \
  timeout 10 "$tool" run "$work/idle.conf" --storage-file "$work/fifo.db"
if [ "$(id -u)" = 0 ]; then
  cp "$work/storage.db" "$work/other.db"
  chown 65534 "$work/other.db"
  expect_failure "a storage file of another user is refused" 1 "other.db belongs to another user: refused" \
    timeout 10 "$tool" run "$work/idle.conf" --storage-file "$work/other.db"
fi
expect_failure "a missing directory is found at start" 1 "The directory of the storage file, $work/nowhere, cannot be used" \
  timeout 10 "$tool" run "$work/idle.conf" --storage-file "$work/nowhere/storage.db"
expect_output "the traps were left as they were" "$work/storage.db" readlink "$work/link.db"
expect_failure "a TCP address is refused at start" 1 "is a TCP address" \
  timeout 10 "$tool" run "$work/idle.conf" --address "tcp:host=127.0.0.1,port=0"

# the private server against a flood and other users ---------------------------

env -u DBUS_SESSION_BUS_ADDRESS "$tool" run "$work/idle.conf" >"$work/private.log" 2>&1 &
private_pid=$!
wait_for_line "^Listening on unix:path=$XDG_RUNTIME_DIR/liteyuki-comm/hub.socket" "$work/private.log"
ok $? "without a session bus, the hub listens on a socket file in \$XDG_RUNTIME_DIR/liteyuki-comm"
expect_output "…a directory of mode 0700" "700" stat -c %a "$XDG_RUNTIME_DIR/liteyuki-comm"
expect_output "…and it writes the address where clients find it" \
  "unix:path=$XDG_RUNTIME_DIR/liteyuki-comm/hub.socket" cat "$XDG_RUNTIME_DIR/liteyuki-comm/address"
expect "a client finds it without --address" "idle" env -u DBUS_SESSION_BUS_ADDRESS "$tool" ps
expect_failure "a second private hub refuses to start" 1 "Another hub serves on $XDG_RUNTIME_DIR/liteyuki-comm/hub.socket" \
  env -u DBUS_SESSION_BUS_ADDRESS timeout 10 "$tool" run "$work/idle.conf"
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
  setpriv --reuid=65534 --regid=65534 --clear-groups /usr/bin/python3 -c "
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect('$XDG_RUNTIME_DIR/liteyuki-comm/hub.socket')
except PermissionError:
    sys.exit(0)
sys.exit(1)" 2>/dev/null
  ok $? "another user cannot even connect"
fi
# 300 connections that never authenticate, held for 3 s
/usr/bin/python3 -c "
import socket, time
held = []
for i in range(300):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect('$XDG_RUNTIME_DIR/liteyuki-comm/hub.socket')
        s.send(b'\0')
        held.append(s)
    except OSError:
        pass
time.sleep(3)
" &
flood_pid=$!
sleep 1.5
threads=$(awk '/^Threads:/ { print $2 }' /proc/$private_pid/status)
ok $([ "$threads" -le 40 ] && echo 0 || echo 1) "a flood of half-open connections costs few threads ($threads)"
wait $flood_pid
wait_until env -u DBUS_SESSION_BUS_ADDRESS "$tool" ps
ok $? "after the flood the owner gets in"
refusals=$(grep -c "Refused" "$work/private.log")
ok $([ "$refusals" -le 3 ] && echo 0 || echo 1) "refusals are logged in a few lines, counted ($refusals)"
# a client that authenticates, then never reads, while 300 changes of
# 1 MiB are announced: disconnected, the hub does not keep them for it
cat >"$work/lazy.py" <<END
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect('$XDG_RUNTIME_DIR/liteyuki-comm/hub.socket')
s.send(b'\\0AUTH EXTERNAL ' + str(os.getuid()).encode().hex().encode() + b'\\r\\n')
assert s.recv(4096).startswith(b'OK')
s.send(b'BEGIN\\r\\n')
open('$work/lazy.ready', 'w').close()
while not os.path.exists('$work/lazy.done'):
    time.sleep(0.05)
s.settimeout(20)
try:
    while s.recv(1 << 20):
        pass
    sys.exit(0)      # the hub closed it
except socket.timeout:
    sys.exit(1)
END
/usr/bin/python3 "$work/lazy.py" &
lazy_pid=$!
wait_until test -e "$work/lazy.ready"
rss_before=$(awk '/^VmRSS:/ { print $2 }' /proc/$private_pid/status)
/usr/bin/python3 -c "
from gi.repository import Gio, GLib
c = Gio.DBusConnection.new_for_address_sync('unix:path=$XDG_RUNTIME_DIR/liteyuki-comm/hub.socket',
    Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT, None, None)
for i in range(300):
    value = GLib.Variant.new_from_bytes(GLib.VariantType('ay'), GLib.Bytes(bytes([i % 256]) * (1 << 20)), True)
    c.call_sync(None, '/icu/liteyuki/Comm1/Storage', 'icu.liteyuki.Comm1.Storage', 'Set',
                GLib.Variant('(sv)', ('big', value)), None, Gio.DBusCallFlags.NONE, 10000, None)
"
ok $? "300 changes of 1 MiB while a client does not read"
rss_after=$(awk '/^VmRSS:/ { print $2 }' /proc/$private_pid/status)
growth=$(( (rss_after - rss_before) / 1024 ))
# (the idle target, which reads nothing, holds up to 32 MiB of change
# notifications of its own; AddressSanitizer keeps freed memory, so its
# build gives no figure to hold)
if ldd "$tool" 2>/dev/null | grep -q libasan; then
  echo "# the hub grew by $growth MiB (AddressSanitizer's quarantine included: not asserted)"
else
  ok $([ $growth -lt 100 ] && echo 0 || echo 1) "the hub grew by $growth MiB, not by 300"
fi
wait_for_line "A D-Bus client fell more than 16 MiB behind without reading: disconnected" "$work/private.log"
ok $? "…and says it dropped that client"
touch "$work/lazy.done"
wait $lazy_pid
ok $? "the client finds its connection closed"
expect "the hub serves the others all the same" "idle" env -u DBUS_SESSION_BUS_ADDRESS "$tool" ps

kill -TERM $private_pid
wait $private_pid
ok $? "the private hub exits 0"
[ ! -e "$XDG_RUNTIME_DIR/liteyuki-comm/hub.socket" ] && [ ! -e "$XDG_RUNTIME_DIR/liteyuki-comm/address" ]
ok $? "…and removes its socket and address file"
expect_failure "an abstract address is refused" 1 "an abstract socket can be reached by every local user" \
  timeout 10 "$tool" run "$work/idle.conf" --address "unix:abstract=/tmp/ly-test"

# the small client commands -------------------------------------------------

start_hub "$work/idle.conf"
ok $? "a hub for the client commands"
check "storage set" lc storage set counter 1
expect_failure "deleting a missing key says so, status 1" 1 "There is no key “nothing”" lc storage delete nothing
expect_output "contains: true" "true" lc storage contains counter
lc storage contains nothing >"$work/contains.out" 2>&1
ok $([ $? = 1 ] && [ "$(cat "$work/contains.out")" = false ] && echo 0 || echo 1) "contains: false, status 1"
check "cas from the value held" lc storage cas counter 1 2
expect_output "…set it" "2" lc storage get counter
expect_failure "cas from another value changes nothing, status 1" 1 "“counter” did not hold 7: not changed" \
  lc storage cas counter 7 8
check "cas of an absent key (-)" lc storage cas fresh - "'new'"
check "cas to no value (-) deletes" lc storage cas fresh "'new'" -
lc storage contains fresh >/dev/null
ok $([ $? = 1 ] && echo 0 || echo 1) "…it is gone"
expect_output "options before the subcommand" "2" lc --bus-name icu.liteyuki.Comm1 --json storage get counter
check "--json for a value going in" lc storage set doc --json '{"a": [1, "two\u00e9", null, 2.5], "b": true}'
expect_output "…stored with its types" "{'a': <[<int64 1>, <'twoé'>, <@mv nothing>, <2.5>]>, 'b': <true>}" lc storage get doc
expect_output "…and read back as the same JSON" '{"a":[1,"twoé",null,2.5],"b":true}' lc storage get doc --json
expect_failure "invalid JSON is a usage error" 2 "not valid JSON" lc storage set doc --json '{"a": }'
expect_failure "JSON nested too deep" 2 "nested more than 64 levels" \
  lc storage set doc --json "$(printf '%.0s[' $(seq 70))$(printf '%.0s]' $(seq 70))"

# values D-Bus cannot carry cross it wrapped, and poison nothing
lc storage watch >"$work/watch" 2>&1 &
watch_pid=$!
# the watcher listens once it sees a change
wait_until sh -c "$tool storage set probe 1 && grep -q '^probe' '$work/watch'"
deep=$(printf '%.0s[' $(seq 63))1$(printf '%.0s]' $(seq 63))
check "storage set a maybe value" lc storage set none "@mv nothing"
expect_output "storage get gives it back" "@mv nothing" timeout 10 "$tool" storage get none
check "storage set a value nested 63 deep" lc storage set deep "$deep"
expect_output "storage get gives it back" "$deep" timeout 10 "$tool" storage get deep
check "set a plain one after them" lc storage set after 1
wait_for_line "^after 1" "$work/watch"
ok $? "storage watch saw the three changes, and was not dropped"
kill $watch_pid
expect "…the maybe value among them" "none @mv nothing" cat "$work/watch"
expect "gdbus Get answers with the wrapped form" "('icu.liteyuki.Comm1.Value', 'mv'" \
  timeout 10 gdbus call --session --dest icu.liteyuki.Comm1 --object-path /icu/liteyuki/Comm1/Storage \
    --method icu.liteyuki.Comm1.Storage.Get none
expect "gdbus GetAll answers, every value in it" "'after': <1>" \
  timeout 10 gdbus call --session --dest icu.liteyuki.Comm1 --object-path /icu/liteyuki/Comm1/Storage \
    --method icu.liteyuki.Comm1.Storage.GetAll
check "send a maybe string on a channel" lc send idle-passive "@ms nothing"
expect "a malformed wrapped form is refused" "is not a value of type “s” in normal form" \
  gdbus call --session --dest icu.liteyuki.Comm1 --object-path /icu/liteyuki/Comm1/Storage \
    --method icu.liteyuki.Comm1.Storage.Set bad "<('icu.liteyuki.Comm1.Value', 's', [byte 0x41])>"
expect_output "the hub still runs" "running" state_of idle

stop_hub
ok $hub_status "that hub exits 0"

# what a child sends the hub in daemon mode can be read
if [ $python_ly = yes ]; then
cat >"$work/talker.conf" <<END
[target talker]
Exec=/usr/bin/python3 -c "from gi.repository import Ly; import time; ch = Ly.active_channel(); [ch.send('message %d' % i) for i in range(5)]; ch.flush(); time.sleep(300)"
StopTimeout=1
END
start_hub "$work/talker.conf"
ok $? "a hub whose child talks"
expect_output "receive -n 5 prints what the child sent, in order" "'message 0'
'message 1'
'message 2'
'message 3'
'message 4'" timeout 20 "$tool" receive talker-active -n 5
expect_failure "a channel that is not there" 1 "There is no channel named “nothing”" lc receive nothing -n 1
expect_output "gdbus Receive that times out gives nothing" "(@av [],)" \
  gdbus call --session --dest icu.liteyuki.Comm1 --object-path /icu/liteyuki/Comm1/Manager \
    --method icu.liteyuki.Comm1.Manager.Receive talker-active 10 100
expect "a bad count is refused" "Receive takes 1 to 4096 messages" \
  gdbus call --session --dest icu.liteyuki.Comm1 --object-path /icu/liteyuki/Comm1/Manager \
    --method icu.liteyuki.Comm1.Manager.Receive talker-active 0 100
stop_hub
ok $hub_status "that hub exits 0"
fi

# a policy: what a child may read and write, and how much it may hold
if [ $python_ly = yes ]; then
cat >"$work/policed.py" <<'END'
import sys
from gi.repository import GLib, Ly
storage = Ly.Storage.get_default()
out = open(sys.argv[1], 'w')
import time
deadline = time.monotonic() + 10
while storage.get('shared.x') is None and time.monotonic() < deadline:
    time.sleep(0.05)
def attempt(name, call):
    try:
        result = call()
        out.write('%s: ok %r\n' % (name, result))
    except GLib.Error as e:
        out.write('%s: %s\n' % (name, Ly.StorageError(e.code).value_nick if e.domain == 'ly-storage-error-quark' else e.message))
    except Exception as e:
        out.write('%s: %r\n' % (name, e))
    out.flush()
attempt('set own', lambda: storage.set('policed.a', GLib.Variant('i', 1)))
attempt('read shared', lambda: storage.get('shared.x'))
attempt('read secret', lambda: storage.get('secret'))
attempt('write shared', lambda: storage.set('shared.x', GLib.Variant('i', 2)))
attempt('list', lambda: sorted(storage.list_keys()))
attempt('set own b', lambda: storage.set('policed.b', GLib.Variant('i', 1)))
attempt('set own c', lambda: storage.set('policed.c', GLib.Variant('i', 1)))
attempt('set own d', lambda: storage.set('policed.d', GLib.Variant('i', 1)))
attempt('set own a large', lambda: storage.set('policed.a', GLib.Variant('s', 'x' * 2000)))
attempt('delete own c', lambda: storage.delete('policed.c'))
attempt('set own d again', lambda: storage.set('policed.d', GLib.Variant('i', 1)))
attempt('subscribe 1', lambda: storage.subscribe('policed.t1'))
attempt('subscribe 2', lambda: storage.subscribe('policed.t2'))
attempt('subscribe 3', lambda: storage.subscribe('policed.t3'))
attempt('subscribe secret', lambda: storage.subscribe('secret.t'))
attempt('publish elsewhere', lambda: storage.publish('other.topic', GLib.Variant('i', 1)))
out.write('done\n')
out.close()
time.sleep(300)
END
cat >"$work/policed.conf" <<END
[target policed]
Exec=/usr/bin/python3 $work/policed.py $work/policed.out
StorageRead=shared.* policed.*
StorageWrite=policed.*
MaxKeys=3
MaxBytes=1K
MaxSubscriptions=2
StopTimeout=1
END
start_hub "$work/policed.conf"
ok $? "a hub with a storage policy for its child"
lc storage set shared.x 42 >/dev/null
lc storage set secret "'the hub''s own'" >/dev/null
wait_for_line "^done" "$work/policed.out" || sleep 10
expect_output "the child's attempts, allowed and refused" "set own: ok True
read shared: ok 42
read secret: permission-denied
write shared: permission-denied
list: ok ['policed.a', 'shared.x']
set own b: ok True
set own c: ok True
set own d: quota
set own a large: quota
delete own c: ok True
set own d again: ok True
subscribe 1: ok True
subscribe 2: ok True
subscribe 3: quota
subscribe secret: permission-denied
publish elsewhere: permission-denied
done" cat "$work/policed.out"
expect_output "what the hub holds is untouched by the refusals" "42" lc storage get shared.x
stop_hub
ok $hub_status "that hub exits 0"
fi
printf '[target p]\nExec=/bin/true\nStorageRead=a*b\nMaxBytes=12Q\nMaxKeys=-1\n' >"$work/badpolicy.conf"
lc run --check "$work/badpolicy.conf" >/dev/null 2>"$work/badpolicy.err"
expect "a bad pattern is named" "“a*b” is not a key pattern" cat "$work/badpolicy.err"
expect "a bad size is named" "“12Q” is not a size" cat "$work/badpolicy.err"
expect "a bad count is named" "“-1” is not a count" cat "$work/badpolicy.err"

# the storage's shared table: on by default, SharedMemorySize= sizes it or
# turns it off; a child finds it as fd 6
for size in default 0; do
  { printf '[hub]\n'
    [ $size = default ] || printf 'SharedMemorySize=%s\n' $size
    printf '[target table]\nExec=/bin/sh -c '\''readlink /proc/$$/fd/6 >>"%s"; echo end >>"%s"; exec sleep 300'\''\nStopTimeout=1\n' \
      "$work/table-$size.log" "$work/table-$size.log"
  } >"$work/table-$size.conf"
  start_hub "$work/table-$size.conf"
  wait_for_line end "$work/table-$size.log"
  ok $? "a child of a hub with SharedMemorySize $size started"
  stop_hub
done
expect "…by default it gets the sealed table as fd 6" "/memfd:liteyuki-comm storage" cat "$work/table-default.log"
expect_output "…with SharedMemorySize=0 it gets none" "end" cat "$work/table-0.log"
printf '[hub]\nSharedMemorySize=12X\n[target a]\nExec=/bin/true\n' >"$work/badsize.conf"
lc run --check "$work/badsize.conf" >/dev/null 2>"$work/badsize.err"
ok $([ $? = 1 ] && echo 0 || echo 1) "a bad SharedMemorySize fails the check"
expect "…and is named" "“12X” is not a size from 0 to 16G" cat "$work/badsize.err"
printf '[hub]\nSharedMemorySize=17G\n[target a]\nExec=/bin/true\n' >"$work/bigsize.conf"
lc run --check "$work/bigsize.conf" >/dev/null 2>"$work/bigsize.err"
expect "…as is one over 16G" "“17G” is not a size from 0 to 16G" cat "$work/bigsize.err"

# a bus that goes away takes no child with it
dbus-daemon --session --fork --print-address=3 --print-pid=4 3>"$work/bus.address" 4>"$work/bus.pid"
DBUS_SESSION_BUS_ADDRESS=$(cat "$work/bus.address") "$tool" run "$work/idle.conf" >"$work/lost.log" 2>&1 &
lost_pid=$!
wait_until env DBUS_SESSION_BUS_ADDRESS="$(cat "$work/bus.address")" "$tool" ps
ok $? "a hub on a bus of its own"
kill "$(cat "$work/bus.pid")"
wait_for_line "Lost the session bus: the children keep running" "$work/lost.log"
ok $? "the bus goes away: the hub says so"
sleep 0.5
kill -0 $lost_pid 2>/dev/null
ok $? "…and keeps running"
pgrep -P $lost_pid -f "sleep 300" >/dev/null
ok $? "…with its child"
kill -TERM $lost_pid
wait $lost_pid
ok $? "it still stops cleanly on SIGTERM"

echo "1..$n"
exit $failed
