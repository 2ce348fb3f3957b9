#!/usr/bin/python3
# test-python-doc.py: the reference document's Python examples, run as
# they are written there with only the imports changed (tests/doc/): this
# process is the hub (LiteyukiBot's main process) and runs the main side;
# a child (a NoneBot process) runs the child side; both run the storage
# example.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import asyncio
import os
import re
import sys
import tempfile
import time

doc_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'doc')
sys.path.insert(0, doc_dir)

import gi  # noqa: E402
gi.require_version('GLib', '2.0')
gi.require_version('Ly', '1')
from gi.repository import GLib, Ly  # noqa: E402

output_path = tempfile.mkstemp(prefix='ly-test-doc-')[1]
os.environ['LY_TEST_OUTPUT'] = output_path
os.environ['PYTHONPATH'] = doc_dir + ':' + os.environ.get('PYTHONPATH', '')

manager = Ly.ProcessManager.new()
manager.add_target('nonebot', [sys.executable, os.path.join(doc_dir, 'child_runner.py')])
manager.start_all()

import main_side  # noqa: E402  the document's main side: registers send_data
import storage_side  # noqa: E402
from frameworks import get_bot  # noqa: E402

ROUNDS = 2


def child_lines():
    with open(output_path) as output:
        return output.read().splitlines()


def count(text):
    return sum(1 for line in child_lines() if line.endswith(text))


async def until_rounds():
    # the example sends every 3 s; this waits for ROUNDS of both
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if count('Passive receive: I am liteyuki main process passive') >= ROUNDS and \
           count('Active receive: I am liteyuki main process active') >= ROUNDS:
            # not a string: the document's filter_func skips it
            main_side.channel_passive.send(42)
            main_side.channel_passive.send("after the number")
            while time.monotonic() < deadline and count('Passive receive: after the number') == 0:
                await asyncio.sleep(0.05)
            return
        await asyncio.sleep(0.05)


started = time.monotonic()
asyncio.run(get_bot().run(until_rounds))
elapsed = time.monotonic() - started
child_pid = manager.get_pid('nonebot')
manager.stop_all()

results = []


def ok(condition, what):
    results.append((bool(condition), what))


lines = child_lines()
ok(storage_side.value == 'value', 'the storage example in the hub reads back "value"')
ok('Storage in the child: value' in [line.split('] ', 1)[-1] for line in lines],
   'the storage example in the child reads back "value"')
ok(Ly.Storage.get_default().get('key') == 'value', 'the hub sees the key')
ok(count('Passive receive: I am liteyuki main process passive') >= ROUNDS,
   'the child\'s passive handler printed what the hub sent')
ok(count('Active receive: I am liteyuki main process active') >= ROUNDS,
   'the child\'s active loop printed what the hub sent')
ok(not any(line.endswith('Passive receive: 42') for line in lines),
   'filter_func kept the number from the passive handler')
ok(count('Passive receive: after the number') == 1, 'the message after the number arrived')
ok(all(re.match(r'\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[INFO\] ', line) for line in lines),
   'every line is timestamped, as in the document')
ok(elapsed >= 3 * (ROUNDS - 1) - 0.5, 'rounds came 3 s apart (%.1f s for %d)' % (elapsed, ROUNDS))
ok(not manager.is_alive('nonebot'), 'stop_all stopped the child')
try:
    os.kill(child_pid, 0)
    ok(False, 'the child process is gone')
except ProcessLookupError:
    ok(True, 'the child process is gone')

os.unlink(output_path)
print('1..%d' % len(results))
for number, (passed, what) in enumerate(results, 1):
    print('%s %d - %s' % ('ok' if passed else 'not ok', number, what))
if not all(passed for passed, _ in results):
    print('# the child printed:\n' + '\n'.join('# ' + line for line in lines))
    sys.exit(1)
