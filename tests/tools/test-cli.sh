#!/bin/sh
# test-cli.sh: `liteyuki-comm run` with a C and a Python target, and every
# client subcommand against it.  Run under dbus-run-session.
#
# Usage: test-cli.sh LITEYUKI-COMM TYPELIB-DIR DATA-DIR DATA-BUILD-DIR
#
# SPDX-License-Identifier: LGPL-2.1-or-later
set -u

tool=$1
typelib_dir=$2
data_dir=$3
data_build_dir=$4
work=$(mktemp -d)
hub_pid=

trap '[ -n "$hub_pid" ] && kill $hub_pid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

. "$(dirname "$0")/../helpers/tap-lib.sh"

# the messages asserted on are the English ones
export LANGUAGE= LC_ALL=C.UTF-8

lc () { "$tool" "$@"; }

# the Python target needs the typelib: a build without introspection
# runs the C target only
targets="c"
[ -f "$typelib_dir/Ly-1.typelib" ] && targets="c py"

write_config () {
  cat >"$work/hub.conf" <<END
# the test's hub
[hub]
StopTimeout=5

[target c]
Exec=$tool demo-child
Restart=on-failure
StopTimeout=2
END
  case $targets in *py*) cat >>"$work/hub.conf" <<END

[target py]
Exec=/usr/bin/python3 $data_dir/demo-child.py
Environment=GI_TYPELIB_PATH=$typelib_dir LD_LIBRARY_PATH=$typelib_dir PYTHONPATH=$data_dir/../src
WorkingDirectory=$work
END
  esac
}

# start_hub [OPTION…]: runs the hub on the session bus and waits for its name
start_hub () {
  # not through lc: $! must be the hub's pid, not a subshell's
  "$tool" run "$work/hub.conf" "$@" >>"$work/hub.log" 2>&1 &
  hub_pid=$!
  gdbus wait --session --timeout 10 icu.liteyuki.Comm1
}

# stop_hub: SIGTERM, and the hub's exit status in $hub_status
stop_hub () {
  kill -TERM $hub_pid
  wait $hub_pid
  hub_status=$?
  hub_pid=
}

bus_call () {
  gdbus call --session --dest org.freedesktop.DBus --object-path /org/freedesktop/DBus \
    --method "org.freedesktop.DBus.$1" ${2+"$2"}
}

# subscribed PID: the watcher PID has its match rules on the bus (one
# for its signal, one that GDBus adds for the sender's name), so it sees
# every signal sent from now on; dbus-daemon's statistics tell
subscribed () {
  for name in $(bus_call ListNames | grep -o "':[0-9.]*'" | tr -d "'"); do
    pid=$(bus_call GetConnectionUnixProcessID "$name" 2>/dev/null | sed -n 's/.*uint32 \([0-9]*\).*/\1/p')
    if [ "$pid" = "$1" ]; then
      rules=$(bus_call Debug.Stats.GetConnectionStats "$name" | sed -n "s/.*'MatchRules': <uint32 \([0-9]*\)>.*/\1/p")
      [ "${rules:-0}" -ge 2 ]
      return
    fi
  done
  return 1
}

storage_is () { [ "$(lc storage get "$1" 2>/dev/null)" = "$2" ]; }
pids () { lc ps --json | tr '{' '\n' | sed -n 's/.*"pid":\([0-9]*\).*/\1/p'; }

# --help -------------------------------------------------------------------

for command in run demo ps start stop restart storage publish subscribe send; do
  expect "$command --help shows its usage" "liteyuki-comm $command" lc $command --help
done
expect_failure "an unknown command is one line and status 2" 2 "unknown command “frobnicate”" lc frobnicate

# configurations -------------------------------------------------------------

bad_config () {
  what=$1; text=$2
  printf '%b' "$3" >"$work/bad.conf"
  expect_failure "bad config: $what" 1 "$text" lc run "$work/bad.conf"
}
bad_config "no Exec" "bad.conf:1: [target a]: Exec= is missing" '[target a]\nRestart=always\n'
bad_config "a bad Restart" "bad.conf:3: key “Restart” of [target a]: “sometimes” is not one of never, on-failure, always" \
  '[target a]\nExec=true\nRestart=sometimes\n'
bad_config "an unknown key" "bad.conf:3: key “Exce” of [target a]: unknown key" '[target a]\nExec=true\nExce=true\n'
bad_config "a bad StopTimeout" "bad.conf:2: key “StopTimeout” of [hub]: “soon” is not a number of seconds" \
  '[hub]\nStopTimeout=soon\n[target a]\nExec=true\n'
bad_config "an unknown group" "bad.conf:1: [servers]: unknown group" '[servers]\nExec=true\n[target a]\nExec=true\n'
bad_config "no target" "bad.conf: no [target NAME] group" '[hub]\nStopTimeout=1\n'
bad_config "not a key file" "bad.conf" 'this is not a key file\n'
bad_config "a missing directory" "key “WorkingDirectory” of [target a]: “/nonexistent” is not a directory" \
  '[target a]\nExec=true\nWorkingDirectory=/nonexistent\n'
bad_config "bad quoting in Exec" "bad.conf:2: key “Exec” of [target a]" '[target a]\nExec=echo "unterminated\n'
expect_failure "a missing config file" 1 "$work/missing.conf" lc run "$work/missing.conf"
# its programs, as a machine that runs the bots has them
mkdir -p "$work/bin"
printf '#!/bin/sh\n' >"$work/bin/melobot"
chmod +x "$work/bin/melobot"
check "the example configuration passes --check" env PATH="$work/bin:$PATH" "$tool" run --check "$data_dir/hub.conf.example"
expect_failure "--check reports a bad configuration" 1 "bad.conf:2: key “Exec” of [target a]" \
  lc run --check "$work/bad.conf"
mkdir -p "$work/config/liteyuki-comm"
printf '[target a]\nExec=true\n' >"$work/config/liteyuki-comm/hub.conf"
check "without CONFIG, run reads ~/.config/liteyuki-comm/hub.conf" env XDG_CONFIG_HOME="$work/config" "$tool" run --check
expect_failure "…and names it when it is missing" 1 "$work/nowhere/liteyuki-comm/hub.conf" \
  env XDG_CONFIG_HOME="$work/nowhere" "$tool" run --check

# the hub on the session bus -----------------------------------------------

write_config
expect_failure "no hub: one clear line" 1 "no hub is running as icu.liteyuki.Comm1" lc ps
start_hub --storage-file "$work/storage.db"
ok $? "run owns icu.liteyuki.Comm1 on the session bus"
expect_failure "a second hub cannot own the name" 1 "cannot own the name icu.liteyuki.Comm1" \
  lc run "$work/hub.conf"

for t in $targets; do
  wait_until sh -c "$tool ps | grep -q '^$t .* running'"
  ok $? "ps shows $t running"
done
expect "ps --json names c" '{"name":"c","pid":' lc ps --json

for t in $targets; do
  check "send a string to $t-active" lc send $t-active "'hello $t'"
  wait_until storage_is $t.received "uint32 1"
  ok $? "$t received it and counted it in the storage"
  wait_for_line "\[$t\] Active receive: hello $t" "$work/hub.log"
  ok $? "$t printed the message"
done
check "send a number to c-active" lc send c-active 42
wait_until storage_is c.received "uint32 2"
ok $? "c received the number"
wait_for_line "\[c\] Active receive: 42" "$work/hub.log"
ok $? "c printed the number"
check "send to c-passive" lc send c-passive "'to the passive side'"
wait_for_line "\[c\] Passive receive: to the passive side" "$work/hub.log"
ok $? "c's passive handler got it"

expect_output "gdbus and storage get agree" \
  "($(lc storage get c.received | sed 's/.*/<&>/'),)" \
  gdbus call --session --dest icu.liteyuki.Comm1 --object-path /icu/liteyuki/Comm1/Storage \
    --method icu.liteyuki.Comm1.Storage.Get c.received
check "set from gdbus" gdbus call --session --dest icu.liteyuki.Comm1 --object-path /icu/liteyuki/Comm1/Storage \
  --method icu.liteyuki.Comm1.Storage.Set from-gdbus "<(1, 'one')>"
expect_output "storage get reads what gdbus set" "(1, 'one')" lc storage get from-gdbus
expect_output "storage get --json of a tuple" '[1,"one"]' lc storage get from-gdbus --json

# bash completion ----------------------------------------------------------

completes () { bash "$(dirname "$0")/../helpers/complete.bash" "$data_dir/liteyuki-comm.bash" "$tool" "$@" | tr '\n' ' '; }
expect_output "completion: commands" "start stop storage " completes st
expect_output "completion: targets from the hub" "$(echo $targets | tr ' ' '\n' | sort | tr '\n' ' ')" completes restart ""
expect_output "completion: channels from the hub" "c-active c-passive " completes send c
expect_output "completion: storage commands" "delete " completes storage d
expect_output "completion: cas and contains" "cas contains " completes storage c
expect_output "completion: keys from the hub" "c.received " completes storage get c
check "a key with a space" lc storage set "c key with spaces" 1
expect_output "completion: a key with a space is one word" 'c.received c\ key\ with\ spaces ' completes storage get c
check "…deleted" lc storage delete "c key with spaces"
expect_output "completion: options of run" "--storage-file " completes run --st
expect_output "completion: --count for watch" "--count " completes storage watch --co
expect_output "completion: nothing after the last argument" "" completes stop c ""

# storage ------------------------------------------------------------------

check "storage set a dictionary" lc storage set config "{'a': <1>, 'b': <'two'>}"
expect_output "storage get the dictionary" "{'a': <1>, 'b': <'two'>}" lc storage get config
expect_output "storage get --json" '{"a":1,"b":"two"}' lc storage get config --json
check "storage set a string" lc storage set greeting "'你好'"
expect_output "storage get the string" "'你好'" lc storage get greeting
expect_output "storage get a typed number" "int64 7" sh -c "$tool storage set seven 'int64 7' && $tool storage get seven"
expect "storage list has every key" "greeting" lc storage list
expect_output "storage list --json is sorted" \
  "[\"c.received\",\"config\",\"from-gdbus\",\"greeting\"$(case $targets in *py*) echo ',"py.received"';; esac),\"seven\"]" \
  lc storage list --json
check "storage delete" lc storage delete greeting
expect_failure "get a deleted key" 1 "There is no key “greeting”" lc storage get greeting
expect_failure "a value without quotes" 2 "“hello” is not a GVariant text value" lc storage set k hello
expect_failure "a value that does not parse" 2 "is not a GVariant text value" lc storage set k "{'a': "
expect_failure "storage without a command" 2 "storage" lc storage
expect_failure "an unknown storage command" 2 "unknown storage command “put”" lc storage put k 1
expect_failure "storage get with no key" 2 "storage get takes 1 argument" lc storage get
expect_failure "an empty key" 1 "" lc storage set "" 1
expect_failure "errors are in Chinese with LANGUAGE=zh_CN" 2 "“hello”不是 GVariant 文本值" \
  env LANGUAGE=zh_CN "$tool" storage set k hello

"$tool" storage watch -n 2 >"$work/watch" 2>&1 &
watch_pid=$!
"$tool" subscribe news -n 2 >"$work/subscribe" 2>&1 &
subscribe_pid=$!
"$tool" subscribe news --json -n 1 >"$work/subscribe-json" 2>&1 &
subscribe_json_pid=$!
for pid in $watch_pid $subscribe_pid $subscribe_json_pid; do
  wait_until subscribed $pid || echo "# process $pid did not subscribe"
done
check "storage set watched" lc storage set watched 1
check "storage delete watched" lc storage delete watched
check "publish a dictionary" lc publish news "{'n': <1>}"
check "publish a second value" lc publish news "'second'"
# a watcher that missed an event would wait for ever
(sleep 20; kill $watch_pid $subscribe_pid $subscribe_json_pid 2>/dev/null) &
watchdog_pid=$!
wait $watch_pid
ok $? "storage watch -n 2 exits 0 after two events"
expect "watch saw the set, printed as get prints it" "watched 1" cat "$work/watch"
expect "watch saw the delete" "watched (deleted)" cat "$work/watch"
wait $subscribe_pid
ok $? "subscribe -n 2 exits 0"
expect "subscribe printed the dictionary" "{'n': <1>}" cat "$work/subscribe"
expect "subscribe printed the second value" "'second'" cat "$work/subscribe"
wait $subscribe_json_pid
ok $? "subscribe --json -n 1 exits 0"
expect "subscribe --json" '{"n":1}' cat "$work/subscribe-json"
kill $watchdog_pid
expect_failure "publish a bad value" 2 "is not a GVariant text value" lc publish news "'unterminated"

# processes ----------------------------------------------------------------

c_pid=$(lc ps --json | tr '{' '\n' | sed -n 's/.*"name":"c","pid":\([0-9]*\).*/\1/p')
check "stop c" lc stop c
expect "ps shows c stopped" "stopped" sh -c "$tool ps | grep '^c '"
kill -0 "$c_pid" 2>/dev/null
ok $((! $?)) "c's process is gone"
check "start c" lc start c
expect "ps shows c running" "running" sh -c "$tool ps | grep '^c '"
old_pid=$(pids | head -1)
check "restart c" lc restart c
[ "$(pids | head -1)" != "$old_pid" ]
ok $? "restart gave c a new process"
expect_failure "stop an unknown target" 1 "There is no target named “nope”" lc stop nope
expect_failure "send to an unknown channel" 1 "There is no channel named “nope-active”" lc send nope-active 1
expect_failure "send a bad value" 2 "is not a GVariant text value" lc send c-active oops
expect_failure "start with no name" 2 "wrong arguments" lc start

# SIGTERM ------------------------------------------------------------------

child_pids=$(pids)
stop_hub
ok $hub_status "SIGTERM: the hub exits 0"
alive=0
for pid in $child_pids; do kill -0 "$pid" 2>/dev/null && alive=1; done
ok $alive "SIGTERM leaves no child ($(echo $child_pids))"

# the storage file ---------------------------------------------------------

[ -s "$work/storage.db" ]
ok $? "the storage file was written"
start_hub --storage-file "$work/storage.db"
expect_output "a restarted hub has the stored dictionary" "{'a': <1>, 'b': <'two'>}" lc storage get config
expect_failure "a deleted key stays deleted" 1 "There is no key “greeting”" lc storage get greeting
check "set while running" lc storage set later "'saved in a second'"
wait_until grep -q "saved in a second" "$work/storage.db"
ok $? "the file holds a change within the save delay, while the hub runs"
stop_hub
ok $hub_status "the hub exits 0"

cp "$work/storage.db" "$work/good.db"
head -c 20 "$work/good.db" >"$work/storage.db"
cp "$work/storage.db" "$work/truncated.db"
expect_failure "a truncated storage file is reported" 1 "storage.db is corrupt (it is left as it is)" \
  lc run "$work/hub.conf" --storage-file "$work/storage.db"
cmp -s "$work/storage.db" "$work/truncated.db"
ok $? "the truncated file is left as it was"
echo "not a storage file" >"$work/storage.db"
expect_failure "a foreign file is reported" 1 "storage.db is not a liteyuki-comm storage file" \
  lc run "$work/hub.conf" --storage-file "$work/storage.db"
expect "the foreign file is left as it was" "not a storage file" cat "$work/storage.db"

# a private server ---------------------------------------------------------

cp "$work/good.db" "$work/storage.db"
env -u DBUS_SESSION_BUS_ADDRESS "$tool" run "$work/hub.conf" --storage-file "$work/storage.db" \
  >"$work/private.log" 2>&1 &
hub_pid=$!
wait_for_line "^Listening on unix:" "$work/private.log"
ok $? "without a session bus, run serves on a private server and prints its address"
address=$(sed -n 's/^Listening on //p' "$work/private.log")
expect_output "storage get over --address" "{'a': <1>, 'b': <'two'>}" lc storage get config --address "$address"
expect "ps over --address" "c " lc ps --address "$address"
expect_output "gdbus --address agrees" "(<{'a': <1>, 'b': <'two'>}>,)" \
  gdbus call --address "$address" --dest icu.liteyuki.Comm1 --object-path /icu/liteyuki/Comm1/Storage \
    --method icu.liteyuki.Comm1.Storage.Get config
expect_failure "a bad address is one line" 1 "cannot connect to unix:path=$work/nothing" \
  lc ps --address "unix:path=$work/nothing"
stop_hub
ok $hub_status "the private hub exits 0 on SIGTERM"

"$tool" run "$work/hub.conf" --address "unix:path=$work/hub.socket" >"$work/explicit.log" 2>&1 &
hub_pid=$!
wait_for_line "^Listening on unix:path=$work/hub.socket" "$work/explicit.log"
ok $? "--address serves at the given address even with a session bus"
expect "ps at that address" "running" lc ps --address "unix:path=$work/hub.socket"
stop_hub
ok $hub_status "that hub exits 0"

# D-Bus activation ---------------------------------------------------------

# a bus of its own whose only service is the one data/ installs, with
# the hub's binary from this build
mkdir -p "$work/services"
sed "s|^Exec=[^ ]*|Exec=$tool|" "$data_build_dir/icu.liteyuki.Comm1.service" \
  >"$work/services/icu.liteyuki.Comm1.service"
cp "$work/hub.conf" "$work/config/liteyuki-comm/hub.conf"
cat >"$work/session.conf" <<END
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:tmpdir=$work</listen>
  <auth>EXTERNAL</auth>
  <servicedir>$work/services</servicedir>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
END
cat >"$work/activation.sh" <<'END'
tool=$1
completion=$2
completion_file=$3
has_hub () {
  gdbus call --session --dest org.freedesktop.DBus --object-path /org/freedesktop/DBus \
    --method org.freedesktop.DBus.NameHasOwner icu.liteyuki.Comm1 | grep -q true
}
# neither a command nor a TAB starts a hub (and every bot) by itself
"$tool" ps >"$work/not-activated-ps" 2>&1 && exit 1
bash "$completion" "$completion_file" "$tool" storage get "" >/dev/null 2>&1
sleep 0.5
has_hub && exit 2
"$tool" ps --start >"$work/activated-ps" 2>&1 || exit 1
# the activated hub outlives this bus unless it is stopped
hub=$(gdbus call --session --dest org.freedesktop.DBus --object-path /org/freedesktop/DBus \
        --method org.freedesktop.DBus.GetConnectionUnixProcessID icu.liteyuki.Comm1 |
      sed -n 's/.*uint32 \([0-9]*\).*/\1/p')
kill -TERM "$hub"
while kill -0 "$hub" 2>/dev/null; do sleep 0.05; done
END
work=$work XDG_CONFIG_HOME="$work/config" timeout 60 \
  dbus-run-session --config-file="$work/session.conf" -- \
    sh "$work/activation.sh" "$tool" "$(dirname "$0")/../helpers/complete.bash" "$data_dir/liteyuki-comm.bash" \
    2>"$work/activation.err"
ok $? "no command and no completion starts a hub; ps --start does, by the D-Bus service file"
expect "without --start: no hub, and how to start one" "no hub is running as icu.liteyuki.Comm1 on the session bus (--start starts one)" \
  cat "$work/not-activated-ps"
expect "the activated hub runs the targets of ~/.config/liteyuki-comm/hub.conf" "running" cat "$work/activated-ps"

echo "1..$n"
exit $failed
