#!/usr/bin/python3
# soak_child.py: the Python child of ly-soak (see ly-soak.c for what it
# does and what the hub checks).
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os
import random

import gi
gi.require_version('GLib', '2.0')
gi.require_version('Ly', '1')
from gi.repository import GLib, Ly  # noqa: E402

COUNTER_KEY = 'soak.counter'
TOPIC = 'soak.topic'

name = Ly.get_process_name()
pid = os.getpid()
active = Ly.active_channel()
storage = Ly.Storage.get_default()
set_key = 'soak.set.' + name
state = {'seq': 0, 'passive': 0, 'published': 0}


def send(kind, value):
    try:
        active.send(GLib.Variant('(ssuu)', (kind, name, pid, value)))
    except GLib.Error as error:
        print('soak child %s: %s' % (name, error.message), flush=True)


def on_passive(channel, message):
    n = message.get_uint32()
    if n <= state['passive']:
        send('violation', n)
    state['passive'] = n


def on_published(storage, topic, value):
    n = value.get_uint32()
    if n <= state['published']:
        send('violation', n)
    state['published'] = n


def cas_increment():
    while True:
        current = storage.get_variant(COUNTER_KEY)
        entries = current.unpack() if current is not None else {}
        mine = entries.get(name, 0) + 1
        entries[name] = mine
        entries['total'] = entries.get('total', 0) + 1
        new = GLib.Variant('a{sv}', {k: GLib.Variant('u', v) for k, v in entries.items()})
        if storage.compare_and_set(COUNTER_KEY, current, new):
            send('cas', mine)
            return


last = storage.get_variant(set_key)
next_set = last.get_uint32() + 1 if last is not None else 1


def tick():
    global next_set
    state['seq'] += 1
    send('seq', state['seq'])
    action = random.randrange(4)
    if action == 0:
        cas_increment()
    elif action == 1:
        storage.set(set_key, GLib.Variant('u', next_set))
        send('set', next_set)
        next_set += 1
    return GLib.SOURCE_CONTINUE


Ly.passive_channel().connect('received', on_passive)
storage.connect('published::' + TOPIC, on_published)
storage.subscribe(TOPIC)
GLib.timeout_add(2, tick)
GLib.MainLoop().run()
