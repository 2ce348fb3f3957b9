#!/usr/bin/python3
# test-python-override.py: the PyGObject override (src/Ly.py): Python
# values in and out, decorators, iteration, the storage as a mapping.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import asyncio
import faulthandler
import socket
import subprocess
import sys
import threading
import time

import gi
import lytap
gi.require_version('GLib', '2.0')
gi.require_version('Gio', '2.0')
gi.require_version('Ly', '1')
from gi.repository import Gio, GLib, Ly  # noqa: E402


def wait_for(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError('timed out waiting for the test condition')
        time.sleep(0.01)


def test_python_values_map_to_gvariant_types():
    cases = [
        (True, 'b'), (7, 'x'), (-2 ** 63, 'x'), (2 ** 64 - 1, 't'), (1.5, 'd'), ('文字', 's'),
        (b'\x00\xff', 'ay'), (None, 'mv'), ((1, 'a'), '(xs)'), ((), '()'), ([1, 2], 'ax'),
        ([1, 'a'], 'av'), ([], 'av'), ({'a': 1}, 'a{sv}'), ({1: 'x'}, 'a{xv}'),
        ([(1, b'x')], 'a(xay)'), (GLib.Variant('u', 3), 'u'),
    ]
    for value, type_string in cases:
        variant = Ly.to_variant(value)
        assert variant.get_type_string() == type_string, (value, variant.get_type_string())
        back = Ly.from_variant(variant)
        expected = 3 if isinstance(value, GLib.Variant) else value
        assert back == expected, (value, back)


def test_values_without_gvariant_form_raise_type_error():
    for value in [object(), {1, 2}, {'a': 1, 2: 'b'}, {(1,): 2}]:
        try:
            Ly.to_variant(value)
        except TypeError as error:
            assert 'GVariant' in str(error) or 'keys' in str(error), error
        else:
            raise AssertionError('%r was converted' % (value,))
    try:
        Ly.to_variant(2 ** 64)
        raise AssertionError('2 ** 64 was converted')
    except OverflowError:
        pass


def test_nested_bytes_and_maybes_come_back():
    value = {'blob': b'xy', 'list': [b'', b'z'], 'none': None, 'deep': {'t': (b'q', None)}}
    assert Ly.from_variant(Ly.to_variant(value)) == value


def test_send_and_receive_python_values():
    a, b = Ly.Channel.new_pair('py')
    for value in ['text', 42, {'a': [1, 2]}, (True, None), b'raw']:
        a.send(value)
        assert b.receive() == value
    a.send('typed')
    variant = b.receive_variant()
    assert isinstance(variant, GLib.Variant) and variant.get_type_string() == 's'


def test_typed_channel_converts_to_its_type():
    a, b = Ly.Channel.new_pair('typed')
    a.set_message_type(GLib.VariantType('u'))
    a.send(5)
    assert b.receive_variant().get_type_string() == 'u'
    try:
        a.send('five')
        raise AssertionError('a string went on a uint32 channel')
    except TypeError as error:
        assert 'GVariant type u' in str(error), error


def test_receive_timeout():
    a, b = Ly.Channel.new_pair('slow')
    started = time.monotonic()
    try:
        b.receive(timeout=0.1)
        raise AssertionError('receive returned without a message')
    except GLib.Error as error:
        assert error.matches(Gio.io_error_quark(), Gio.IOErrorEnum.TIMED_OUT), error
    assert time.monotonic() - started >= 0.09


def test_receive_arguments_and_given_back_messages():
    a, b = Ly.Channel.new_pair('args')
    assert a.send({'k': [1, 2]}) is True
    assert b.receive(None, 5) == {'k': [1, 2]}
    a.send('by keyword')
    assert b.receive(timeout=5, cancellable=Gio.Cancellable()) == 'by keyword'
    for bad in ((1, 2, 3), ('not a cancellable',)):
        try:
            b.receive(*bad)
            raise AssertionError('receive took %r' % (bad,))
        except TypeError:
            pass
    for bad in ({'foo': 1}, {'timeout': 'soon'}):
        try:
            b.receive(**bad)
            raise AssertionError('receive took %r' % (bad,))
        except TypeError:
            pass
    # a message that an awaitable gave back comes before the next ones
    a.send('next')
    b._return(GLib.Variant('s', 'given back'))
    b._return(GLib.Variant('s', 'given back too'))
    assert b.receive() == 'given back'
    assert b.receive_variant().unpack() == 'given back too'
    assert b.receive_variant(timeout=5).unpack() == 'next'


def test_iteration_ends_when_the_peer_closes():
    a, b = Ly.Channel.new_pair('iter')
    for i in range(3):
        a.send(i)
    a.close()
    assert list(b) == [0, 1, 2]


def test_on_receive_with_filters_sync_and_async():
    a, b = Ly.Channel.new_pair('passive')
    got, got_async = [], []

    @b.on_receive(filter_func=lambda data: isinstance(data, str))
    def on_string(data):
        got.append(data)

    async def is_int(data):
        return isinstance(data, int)

    @b.on_receive(filter_func=is_int)
    async def on_int(data):
        await asyncio.sleep(0)
        got_async.append(data)

    assert on_string.__name__ == 'on_string'    # the decorator returns the function
    for value in ['one', 1, 2.5, 'two', 2]:
        a.send(value)
    wait_for(lambda: len(got) == 2 and len(got_async) == 2)
    assert got == ['one', 'two'] and got_async == [1, 2], (got, got_async)
    assert b.get_mode() == Ly.ChannelMode.PASSIVE


def test_storage_with_python_values():
    storage = Ly.Storage.new()
    storage.set('config', {'name': 'bot', 'plugins': ['a', 'b']})
    assert storage.get('config') == {'name': 'bot', 'plugins': ['a', 'b']}
    assert storage.get('missing') is None
    assert storage.get('missing', 'default') == 'default'
    assert storage.get_variant('config').get_type_string() == 'a{sv}'
    storage['count'] = 3
    assert storage['count'] == 3 and 'count' in storage
    assert storage.get_all() == {'config': {'name': 'bot', 'plugins': ['a', 'b']}, 'count': 3}
    del storage['count']
    assert 'count' not in storage
    try:
        storage['count']
        raise AssertionError('a deleted key was read')
    except KeyError:
        pass
    storage.delete('count')                     # ignore_key_error=True, as the original
    try:
        storage.delete('count', ignore_key_error=False)
        raise AssertionError('deleting a missing key did not raise')
    except KeyError:
        pass


def test_publish_and_on_subscriber_receive():
    storage = Ly.Storage.get_default()
    got = []

    @storage.on_subscriber_receive('news')
    def on_news(data):
        got.append(data)

    storage.publish('news', {'n': 1})
    storage.publish('other', 'not this')
    storage.publish('news', 'second')
    wait_for(lambda: len(got) == 2)
    assert got == [{'n': 1}, 'second'], got


def test_process_singletons_outside_a_child():
    assert Ly.active_channel() is None and Ly.passive_channel() is None
    try:
        Ly.active_channel.receive()
        raise AssertionError('the hub has an active channel')
    except RuntimeError as error:
        assert 'child process' in str(error)
    from gi.repository.Ly import shared_memory
    shared_memory.set('key', 'value')
    assert shared_memory.get('key') == 'value'
    assert Ly.Storage.get_default().get('key') == 'value'
    shared_memory['mapped'] = [1]
    assert 'mapped' in shared_memory and shared_memory['mapped'] == [1]
    del shared_memory['mapped']
    assert 'mapped' not in shared_memory


SLOW_READER = """
import sys, time, gi
gi.require_version('Ly', '1')
from gi.repository import Ly
channel = Ly.Channel.new_for_fd('big', int(sys.argv[1]))
total = 0
for i in range(int(sys.argv[2])):
    total += len(channel.receive())
    if i % 50 == 0:
        time.sleep(0.01)
channel.send(total)
channel.flush()
"""


def test_large_bytes_to_a_slow_reader_without_a_loop():
    # Large bytes are lent to the library, which writes the rest of a
    # full socket from its flusher thread and lets them go there, while
    # this thread (holding the GIL) sends on: the release must not wait
    # for the GIL (it deadlocked).  A hang ends the test with tracebacks.
    n = 300
    ours, theirs = socket.socketpair()
    child = subprocess.Popen([sys.executable, '-c', SLOW_READER, str(theirs.fileno()), str(n)],
                             pass_fds=[theirs.fileno()])
    theirs.close()
    channel = Ly.Channel.new_for_fd('big', ours.detach())
    payloads = [bytes([i]) * (1 << 20) for i in range(4)]
    faulthandler.dump_traceback_later(120, exit=True)
    try:
        for i in range(n):
            while True:
                try:
                    channel.send(payloads[i % 4])
                    break
                except GLib.Error:
                    channel.flush()
        assert channel.receive(timeout=60) == n << 20
        assert child.wait(60) == 0
    finally:
        faulthandler.cancel_dump_traceback_later()
    # what the library let go of in its thread is released (by a pending
    # call in this thread): only our own references are left
    wait_for(lambda: all(sys.getrefcount(payloads[i]) == 2 for i in range(len(payloads))))


def test_handlers_run_while_the_main_thread_is_busy():
    # no GLib main loop here: dispatch_in_thread() runs one
    a, b = Ly.Channel.new_pair('busy')
    got = threading.Event()
    b.on_receive()(lambda data: got.set())
    a.send('ping')
    assert got.wait(10)


lytap.run(globals())
