#!/usr/bin/python3
# demo-child.py: the Python child of `liteyuki-comm demo`: the reference
# document's child side.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import threading
import time

import gi
gi.require_version('GLib', '2.0')
gi.require_version('Ly', '1')
from gi.repository import GLib, Ly  # noqa: E402

name = Ly.get_process_name()
storage = Ly.Storage.get_default()


def say(text):
    print('%s [%s] %s' % (time.strftime('%Y-%m-%d %H:%M:%S'), name, text), flush=True)


def on_passive_receive(channel, data):
    say('Passive receive: %s' % data.unpack())


Ly.passive_channel().connect('received::s', on_passive_receive)


def active_loop():
    received = 0
    while True:
        try:
            data = Ly.active_channel().receive(None)
        except GLib.Error:
            return
        say('Active receive: %s' % data.unpack())
        received += 1
        round_ = storage.get('hub.round')
        storage.set('%s.received' % name, GLib.Variant('u', received))
        say('Storage: hub.round = %d, %s.received = %d'
            % (round_.unpack() if round_ is not None else 0, name, received))


threading.Thread(target=active_loop, daemon=True).start()
GLib.MainLoop().run()
