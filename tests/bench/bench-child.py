#!/usr/bin/python3
# bench-child.py: a Python child for ly-bench-process: sends "ready" on its
# active channel as soon as it can, then lives until the hub stops it.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import gi
gi.require_version('GLib', '2.0')
gi.require_version('Ly', '1')
from gi.repository import GLib, Ly  # noqa: E402

Ly.active_channel().send(GLib.Variant('s', 'ready'))
GLib.MainLoop().run()
