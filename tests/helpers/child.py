#!/usr/bin/python3
# child.py: the reference document's child side, in Python, for the
# process manager tests.  Lines go to the file named by LY_TEST_OUTPUT.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os
import threading

import gi
gi.require_version('GLib', '2.0')
gi.require_version('Ly', '1')
from gi.repository import GLib, Ly  # noqa: E402

output = open(os.environ['LY_TEST_OUTPUT'], 'a', buffering=1)


def log(line):
    output.write(line + '\n')


assert not Ly.is_main_process()
passive_channel = Ly.passive_channel()
active_channel = Ly.active_channel()
log('hello from %s pid %d' % (Ly.get_process_name(), os.getpid()))


def on_passive_receive(channel, data):
    log('Passive receive: %s' % data.unpack())
    channel.send(GLib.Variant('s', 'child passive got %s' % data.unpack()))


passive_channel.connect('received::s', on_passive_receive)


def active_loop():
    while True:
        try:
            data = active_channel.receive()     # a Python value: the override
        except GLib.Error:
            return
        log('Active receive: %s' % data)
        active_channel.send('child active got %s' % data)


threading.Thread(target=active_loop, daemon=True).start()
GLib.MainLoop().run()
