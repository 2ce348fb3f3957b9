#!/usr/bin/python3
# test-bindings.py: the channel API from Python through GObject-introspection
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import sys
import threading
import traceback

import gi
gi.require_version('GLib', '2.0')
gi.require_version('Ly', '1')
from gi.repository import GLib, Ly  # noqa: E402


def run_until(predicate, timeout=10):
    context = GLib.MainContext.default()
    deadline = GLib.get_monotonic_time() + timeout * 1000000
    while not predicate():
        if GLib.get_monotonic_time() > deadline:
            raise AssertionError('timed out waiting for the test condition')
        context.iteration(True)


def test_pair_and_values_both_ways():
    a, b = Ly.Channel.new_pair('py')
    assert a.props.name == 'py' and b.get_name() == 'py'
    values = [
        GLib.Variant('s', 'hello'),
        GLib.Variant('s', ''),
        GLib.Variant('s', '多字节'),
        GLib.Variant('i', -42),
        GLib.Variant('x', 2 ** 40),
        GLib.Variant('a{sv}', {'name': GLib.Variant('s', 'x'), 'n': GLib.Variant('i', 3)}),
        GLib.Variant('a{ss}', {}),
        GLib.Variant('(sai)', ('t', [1, 2, 3])),
    ]
    for value in values:
        a.send(value)
        b.send(value)
    for value in values:
        got_b = b.receive_variant(None)
        got_a = a.receive_variant(None)
        assert got_b.get_type_string() == value.get_type_string()
        assert got_b.unpack() == value.unpack(), (got_b, value)
        assert got_a.unpack() == value.unpack()
    assert b.props.mode == Ly.ChannelMode.ACTIVE


def test_received_signal_with_detail():
    a, b = Ly.Channel.new_pair('py')
    strings, ints, everything = [], [], []
    b.connect('received::s', lambda ch, m: strings.append(m.unpack()))
    b.connect('received::i', lambda ch, m: ints.append(m.unpack()))
    b.connect('received', lambda ch, m: everything.append(m.unpack()))
    a.send(GLib.Variant('s', 'one'))
    a.send(GLib.Variant('i', 1))
    a.send(GLib.Variant('a{sv}', {'k': GLib.Variant('b', True)}))
    a.send(GLib.Variant('s', 'two'))
    run_until(lambda: len(everything) == 4)
    assert strings == ['one', 'two'], strings
    assert ints == [1], ints
    assert everything[2] == {'k': True}
    assert b.props.mode == Ly.ChannelMode.PASSIVE


def test_receive_async_with_main_loop():
    a, b = Ly.Channel.new_pair('py')
    loop = GLib.MainLoop()
    got = []

    def on_message(channel, result):
        got.append(channel.receive_finish(result).unpack())
        if len(got) < 3:
            channel.receive_async(None, on_message)
        else:
            loop.quit()

    b.receive_async(None, on_message)
    GLib.timeout_add(10, lambda: a.send(GLib.Variant('s', 'late')) and False)
    a.send(GLib.Variant('s', 'first'))
    a.send(GLib.Variant('a{sv}', {'x': GLib.Variant('d', 1.5)}))
    GLib.timeout_add_seconds(10, loop.quit)
    loop.run()
    assert got == ['first', {'x': 1.5}, 'late'], got


def test_errors_are_gerrors():
    a, b = Ly.Channel.new_pair('py')
    a.set_message_type(GLib.VariantType.new('s'))
    try:
        a.send(GLib.Variant('i', 1))
        raise AssertionError('a mismatching type was sent')
    except GLib.Error as error:
        assert error.matches(Ly.channel_error_quark(), Ly.ChannelError.TYPE_MISMATCH), error
        assert 'py' in error.message
    a.send(GLib.Variant('s', 'ok'))
    assert b.receive_variant(None).unpack() == 'ok'
    b.close()
    assert b.props.closed
    try:
        b.receive_variant(None)
        raise AssertionError('receive after close succeeded')
    except GLib.Error as error:
        assert error.matches(Ly.channel_error_quark(), Ly.ChannelError.CLOSED), error


def test_closed_signal_and_drain():
    a, b = Ly.Channel.new_pair('py')
    closed = []
    b.connect('closed', lambda ch, error: closed.append(error))
    a.send(GLib.Variant('u', 7))
    a.close()
    run_until(lambda: closed)
    assert closed == [None]
    assert b.receive_variant(None).unpack() == 7


def test_worker_thread_receive():
    # the main thread runs the loop; a worker receives actively
    a, b = Ly.Channel.new_pair('py')
    loop = GLib.MainLoop()
    got = []

    def worker():
        for _ in range(1000):
            got.append(b.receive_variant(None).unpack())
        GLib.idle_add(loop.quit)

    thread = threading.Thread(target=worker)
    thread.start()
    for i in range(1000):
        a.send(GLib.Variant('u', i))
    GLib.timeout_add_seconds(10, loop.quit)
    loop.run()
    thread.join()
    assert got == list(range(1000)), got[:10]


def test_worker_thread_without_main_loop():
    # nothing runs the loop: the blocked receive does the I/O itself
    a, b = Ly.Channel.new_pair('py')
    got = []

    def worker():
        for _ in range(1000):
            got.append(b.receive_variant(None).unpack())

    thread = threading.Thread(target=worker)
    thread.start()
    for i in range(1000):
        a.send(GLib.Variant('u', i))
    thread.join(10)
    assert not thread.is_alive()
    assert got == list(range(1000)), got[:10]


def test_storage_in_the_hub():
    storage = Ly.Storage.get_default()
    assert not storage.is_proxy()
    changes = []
    storage.connect('changed::counter', lambda s, key, value: changes.append(
        value.unpack() if value is not None else None))
    storage.set('counter', GLib.Variant('u', 1))
    storage.set('counter', GLib.Variant('u', 1))   # equal: no change
    assert storage.get_variant('counter').unpack() == 1
    assert storage.get_variant('missing') is None
    assert storage.compare_and_set('counter', GLib.Variant('u', 1), GLib.Variant('u', 2))
    assert not storage.compare_and_set('counter', GLib.Variant('u', 1), GLib.Variant('u', 3))
    assert storage.compare_and_set('fresh', None, GLib.Variant('s', 'x'))
    assert storage.compare_and_set('fresh', GLib.Variant('s', 'x'), None)
    storage.delete('counter')
    assert changes == [1, 2, None], changes
    try:
        storage.set('', GLib.Variant('i', 1))
        raise AssertionError('an empty key was accepted')
    except GLib.Error as error:
        assert error.matches(Ly.storage_error_quark(), Ly.StorageError.INVALID_KEY), error


def main():
    tests = [(name, func) for name, func in globals().items() if name.startswith('test_')]
    print('1..%d' % len(tests))
    failed = 0
    for number, (name, func) in enumerate(tests, 1):
        try:
            func()
            print('ok %d - %s' % (number, name))
        except Exception:
            failed += 1
            print('not ok %d - %s' % (number, name))
            for line in traceback.format_exc().splitlines():
                print('# ' + line)
        sys.stdout.flush()
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
