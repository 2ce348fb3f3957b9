# gapp_child.py: a GNOME application child: the handler is registered
# before Gio.Application.run(); it must run in the main thread, with no
# thread of Ly's anywhere.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import threading
import time

import gi
gi.require_version('Gio', '2.0')
gi.require_version('Ly', '1')
from gi.repository import Gio, GLib  # noqa: E402
from gi.repository.Ly import active_channel, passive_channel  # noqa: E402

app = Gio.Application(application_id='icu.liteyuki.Test.GApp', flags=Gio.ApplicationFlags.NON_UNIQUE)


@passive_channel.on_receive()
def on_message(data):
    active_channel.send({'data': data,
                         'main_thread': threading.current_thread() is threading.main_thread(),
                         'threads': sorted(thread.name for thread in threading.enumerate()),
                         'depth': GLib.main_depth()})
    if data == 'quit':
        app.release()


def on_activate(application):
    application.hold()
    active_channel.send('ready')


app.connect('activate', on_activate)
time.sleep(0.5)      # a slow start: Ly must not take the main context meanwhile
app.run(None)
