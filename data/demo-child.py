#!/usr/bin/python3
# demo-child.py: the Python child of `liteyuki-comm demo`, written as the
# reference document's child side: a passive handler with a filter, an
# active receive loop, and the shared storage.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import sys
import time

import gi
gi.require_version('GLib', '2.0')
gi.require_version('Ly', '1')
from gi.repository import GLib, Ly  # noqa: E402
from gi.repository.Ly import active_channel, passive_channel, shared_memory  # noqa: E402

name = Ly.get_process_name()


def say(text):
    # one write a line: the C child and the hub write to the same terminal
    sys.stdout.write('%s [%s] %s\n' % (time.strftime('%Y-%m-%d %H:%M:%S'), name, text))
    sys.stdout.flush()


# passive mode: called for every string (Ly runs the handlers in a thread
# of its own, as this program runs no GLib main loop)
@passive_channel.on_receive(filter_func=lambda data: isinstance(data, str))
def on_passive_receive(data):
    say('Passive receive: %s' % data)


# active mode: receive until the hub closes the channel
received = 0
for data in active_channel:
    say('Active receive: %s' % data)
    received += 1
    round_ = shared_memory.get('hub.round', 0)
    # the hub reads a uint32: a GLib.Variant says the exact type
    shared_memory.set('%s.received' % name, GLib.Variant('u', received))
    say('Storage: hub.round = %d, %s.received = %d' % (round_, name, received))
