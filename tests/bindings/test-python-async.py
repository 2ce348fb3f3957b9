#!/usr/bin/python3
# test-python-async.py: Python programs as bots and GNOME applications are
# written, across real processes: an asyncio hub with an asyncio child
# (tests/helpers/asyncio_child.py, the reference document's NoneBot plugin
# shape), a Gio.Application child, where handlers run, awaitables and
# their cancellation, the polite stop of an asyncio child; the storage as
# a mapping against dict; conversions against the pure-Python reference.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import asyncio
import atexit
import collections.abc
import os
import random
import sys
import tempfile
import threading
import time

import gi
import lytap
gi.require_version('GLib', '2.0')
gi.require_version('Ly', '1')
from gi.repository import GLib, Ly  # noqa: E402
import gi.overrides.Ly as override  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = sys.executable
OUTPUT = tempfile.NamedTemporaryFile(prefix='ly-test-async-', delete=False).name
os.environ['LY_TEST_OUTPUT'] = OUTPUT
atexit.register(os.unlink, OUTPUT)

EVENT = {'type': 'message', 'user_id': 123456789, 'group_id': 987654,
         'message': 'hello world ' * 3, 'self_id': 42, 'time': 1700000000,
         'sub_type': 'normal', 'tags': ['a', 'b', 'c']}


def test_the_c_extension_is_used():
    if os.environ.get('LY_TEST_PYTHON_EXTENSION') == '1':
        assert override._fast is not None, 'the override runs without gi.overrides._Ly'
        assert Ly.to_variant is override.to_variant


async def receive(channel, timeout=20):
    return await asyncio.wait_for(channel.receive_async(), timeout)


def manager_for(name, script):
    manager = Ly.ProcessManager.new()
    manager.add_target(name, [PYTHON, os.path.join(HERE, '..', 'helpers', script)])
    manager.set_target_stop_timeout(name, 10)
    return manager


def test_asyncio_hub_and_asyncio_child():
    async def main():
        Ly.dispatch_in_thread()       # in a running loop: this loop dispatches
        manager = manager_for('bot', 'asyncio_child.py')
        exited = asyncio.get_running_loop().create_future()
        hub_thread = threading.current_thread()

        def on_exited(_manager, name, status, reason):
            assert threading.current_thread() is hub_thread
            exited.set_result((status, reason))
        manager.connect('process-exited', on_exited)
        manager.start_all()
        active, passive = Ly.get_channel('bot-active'), Ly.get_channel('bot-passive')
        assert await receive(active) == 'ready'

        # handlers: coroutines on the program's loop, in order; sync ones there too
        for value in ['one', 1, 'two', 2, 'three']:
            passive.send(value)
        got = [await receive(active) for _ in range(5)]
        texts = [reply['data'] for reply in got if reply['handler'] == 'async']
        numbers = [reply['data'] for reply in got if reply['handler'] == 'sync']
        assert texts == ['one', 'two', 'three'] and numbers == [1, 2], got
        for reply in got:
            assert reply['main_thread'] and reply['program_loop'], reply
            assert reply['threads'] == 1, reply     # no thread of Ly's in an asyncio child

        # awaitable storage calls and a subscription, from the child's loop
        storage = Ly.Storage.get_default()
        storage['hub.value'] = [1, 2]
        active.send('storage')
        replies = {}
        for _ in range(2):
            reply = await receive(active)
            replies[reply['handler']] = reply
        assert replies['storage']['data'] == [True, False, [1, 2]], replies
        assert replies['news']['data'] == 'from the child' and replies['news']['program_loop'], replies
        assert storage['child.value'] == {'n': 1} and storage['child.counter'] == 1

        # a cancelled awaitable, and one never awaited, take no message
        active.send('cancel')
        assert await receive(active) == 'cancelled'
        active.send('the next one')
        reply = await receive(active)
        assert reply == {'handler': 'after-cancel', 'data': 'the next one', 'main_thread': True,
                         'program_loop': True, 'threads': 1}, reply

        active.send('flush')
        assert await receive(active) == 'sent-async'

        # the registry in a child, as in the original
        active.send('registry')
        reply = await receive(active)
        assert reply['data'] == [True, True, True, ['bot-active', 'bot-passive', 'mine']], reply

        # a polite stop runs the program's finally and asyncio.run's cleanup
        with open(OUTPUT, 'w'):
            pass
        started = time.monotonic()
        manager.stop('bot')
        status, reason = await asyncio.wait_for(exited, 20)
        latency = time.monotonic() - started
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
        assert reason == Ly.ExitReason.STOPPED, reason
        assert manager.get_state('bot') == Ly.ProcessState.STOPPED
        with open(OUTPUT) as output:
            assert 'finally ran' in output.read()
        assert latency < 3, latency            # not the 5 s of SIGTERM at half the timeout
        print('# asyncio child: polite stop to exit %.0f ms' % (latency * 1000))

    asyncio.run(main())


def test_gio_application_child():
    loop = GLib.MainLoop()
    manager = manager_for('gapp', 'gapp_child.py')
    statuses = []
    manager.connect('process-exited', lambda _m, _name, status, _reason: (statuses.append(status), loop.quit()))
    manager.start_all()
    active, passive = Ly.get_channel('gapp-active'), Ly.get_channel('gapp-passive')
    replies = []

    def on_reply(channel, message):
        value = Ly.from_variant(message)
        replies.append(value)
        if value == 'ready':
            passive.send('hello')
            passive.send('quit')
    active.connect('received', on_reply)
    GLib.timeout_add_seconds(20, loop.quit)
    loop.run()
    assert replies[0] == 'ready', replies
    assert [reply['data'] for reply in replies[1:]] == ['hello', 'quit'], replies
    for reply in replies[1:]:
        assert reply['main_thread'] and reply['depth'] == 1, reply
        assert reply['threads'] == ['MainThread'], reply     # no thread of Ly's once run() runs
    assert statuses and os.WIFEXITED(statuses[0]) and os.WEXITSTATUS(statuses[0]) == 0, statuses


def test_handlers_on_the_running_loop_in_one_process():
    a, b = Ly.Channel.new_pair('inproc')
    seen = []

    async def main():
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        @b.on_receive()
        async def on_message(data):
            seen.append((data, asyncio.get_running_loop() is loop,
                         threading.current_thread() is threading.main_thread()))
            if len(seen) == 3:
                done.set()
        for value in range(3):
            a.send(value)
        await asyncio.wait_for(done.wait(), 10)

    asyncio.run(main())
    assert seen == [(0, True, True), (1, True, True), (2, True, True)], seen


def test_awaitables_in_one_process():
    a, b = Ly.Channel.new_pair('await')
    storage = Ly.Storage.new()

    async def main():
        never = b.receive_async()        # a coroutine: nothing started
        a.send('first')
        task = asyncio.ensure_future(b.receive_async())
        assert await asyncio.wait_for(task, 5) == 'first'
        never.close()
        # cancel a waiting receive; the message sent after still arrives
        waiting = asyncio.ensure_future(b.receive_async())
        await asyncio.sleep(0.02)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        assert waiting.cancelled()
        a.send('second')
        assert await asyncio.wait_for(b.receive_async(), 5) == 'second'
        await a.send_async({'x': 1})
        await a.flush_async()
        assert b.receive(timeout=5) == {'x': 1}
        await storage.set_async('k', 1)
        assert await storage.get_async('k') == 1
        assert await storage.compare_and_set_async('k', 1, 2) is True
        assert await storage.compare_and_set_async('k', 1, 3) is False
        assert await storage.get_async('missing') is None
        await storage.publish_async('topic', 'x')
        # cancelling the awaiting task cancels the operation (no hang)
        task = asyncio.ensure_future(storage.get_async('k'))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    assert storage['k'] == 2


def test_storage_is_a_mutable_mapping_like_dict():
    storage = Ly.Storage.new()
    reference = {}
    assert isinstance(storage, collections.abc.MutableMapping)
    assert isinstance(Ly.shared_memory, collections.abc.MutableMapping)
    for target in (storage, reference):
        target['a'] = 1
        target.update({'b': [1, 2]}, c='three')
        target.update([('d', {'e': None})])
        assert target.setdefault('a', 99) == 1
        assert target.setdefault('f', 'new') == 'new'
        assert target.pop('c') == 'three'
        assert target.pop('c', 'gone') == 'gone'
        del target['f']
    assert dict(storage) == reference
    assert len(storage) == len(reference) == 3
    assert sorted(storage) == sorted(reference) and sorted(storage.keys()) == sorted(reference.keys())
    assert sorted(storage.items()) == sorted(reference.items(), key=lambda item: item[0])
    assert sorted(map(repr, storage.values())) == sorted(map(repr, reference.values()))
    assert ('a' in storage) and ('zz' not in storage) and (1 not in storage)
    assert storage.get('zz', 5) == 5 and storage.get('a') == 1
    for missing in (lambda: storage['zz'], lambda: storage.pop('zz'), lambda: storage.__delitem__('zz')):
        try:
            missing()
            raise AssertionError('a missing key did not raise KeyError')
        except KeyError:
            pass
    key, value = storage.popitem()
    assert key in reference and value == reference.pop(key)
    storage.clear()
    assert len(storage) == 0 and bool(storage)
    # compare_and_set with Python values; None as old means absent
    assert storage.compare_and_set('n', None, 1) and not storage.compare_and_set('n', None, 2)
    assert storage.compare_and_set('n', 1, {'deep': [1]}) and storage['n'] == {'deep': [1]}
    assert storage.compare_and_set('n', {'deep': [1]}, None) and 'n' not in storage
    try:
        storage['bad key'.encode()] = 1
        raise AssertionError('a bytes key was taken')
    except TypeError:
        pass


def test_conversion_round_trips():
    cases = [True, False, 0, -1, 2 ** 63 - 1, -2 ** 63, 2 ** 63, 2 ** 64 - 1, 1.5, -0.0, '', '文字 ✓ é',
             b'', b'\x00\xff', bytearray(b'ba'), memoryview(b'mv'), None, (), (1, 'a', None),
             [], [1, 2], [1, 'a'], [1.5, 2.5], [True, False], ['a', 'b'], [[1], [2, 3]], [None, None],
             {}, {'a': 1}, {1: 'one', -2: 'two'}, {'nested': {'list': [{'x': (b'q', None)}]}},
             EVENT, [EVENT] * 3, GLib.Variant('u', 7), {'typed': GLib.Variant('(yq)', (1, 2))}]
    for value in cases:
        variant = Ly.to_variant(value)
        reference = override._py_to_variant(value)
        assert variant.get_type_string() == reference.get_type_string(), value
        assert variant.is_normal_form()
        assert variant.get_data_as_bytes().get_data() == \
            reference.get_normal_form().get_data_as_bytes().get_data(), value
        expected = bytes(value) if isinstance(value, (bytearray, memoryview)) else value
        if isinstance(value, GLib.Variant):
            expected = value.unpack()
        back = Ly.from_variant(variant)
        if isinstance(value, dict) and 'typed' in value:
            expected = {'typed': (1, 2)}
        assert back == expected, (value, back)
        # the same bytes read as untrusted data
        untrusted = GLib.Variant.new_from_bytes(variant.get_type(), variant.get_data_as_bytes(), False)
        assert Ly.from_variant(untrusted) == expected
    # data not in normal form reads as GLib's accessors read it
    for type_string, data in [('s', b'abc'), ('as', b'a\x00\x09'), ('(ys)', b'\x01'), ('b', b'\x05'),
                              ('a{sv}', b'k\x00\x00\x00'), ('v', b'\x00\x00*')]:
        odd = GLib.Variant.new_from_bytes(GLib.VariantType(type_string), GLib.Bytes(data), False)
        assert not odd.is_normal_form()
        assert Ly.from_variant(odd) == override._py_from_variant(odd.get_normal_form()), type_string
    big = os.urandom(16 * 1024 * 1024)
    assert Ly.from_variant(Ly.to_variant(big)) == big
    numbers = list(range(-50000, 50000))
    assert Ly.from_variant(Ly.to_variant(numbers)) == numbers
    mapping = {str(i): i for i in range(100000)}
    assert Ly.from_variant(Ly.to_variant(mapping)) == mapping


def test_typed_conversion_and_errors():
    assert Ly.to_variant(5, 'u').get_type_string() == 'u'
    assert Ly.to_variant({'a': (1, 's')}, 'a{s(is)}').unpack() == {'a': (1, 's')}
    assert Ly.to_variant([None, b'x'], 'amay').get_type_string() == 'amay'
    assert Ly.to_variant('/a/b', 'o').get_type_string() == 'o'
    for value, type_string in [(300, 'y'), ('x', 'i'), ([1, 'a'], 'ai'), ('not/a/path', 'o'),
                               ((1,), '(ii)'), ({'a': 1}, 'as'), ('a\0b', 's')]:
        try:
            Ly.to_variant(value, type_string)
            raise AssertionError('%r became %s' % (value, type_string))
        except TypeError as error:
            assert 'GVariant type' in str(error), error
    for value in [object(), {1, 2}, {'a': 1, 2: 'b'}]:
        try:
            Ly.to_variant(value)
            raise AssertionError('%r was converted' % (value,))
        except TypeError:
            pass
    deep = []
    for _ in range(100):
        deep = [deep]
    try:
        Ly.to_variant(deep)
        raise AssertionError('100 levels were converted')
    except TypeError as error:
        assert 'deep' in str(error)


def test_random_values_match_glib():
    generator = random.Random(20261201)

    def value(depth=0):
        kind = generator.randrange(11 if depth < 3 else 6)
        if kind == 0:
            return generator.choice([None, True, False])
        if kind == 1:
            return generator.choice([0, -1, 255, 65536, 2 ** 63 - 1, -2 ** 63, 2 ** 64 - 1])
        if kind == 2:
            return generator.random()
        if kind == 3:
            return generator.choice(['', 'a', 'é文', 'x' * 300])
        if kind == 4:
            return bytes(generator.randrange(256) for _ in range(generator.choice([0, 3, 300])))
        if kind == 5:
            return generator.choice([GLib.Variant('u', 7), GLib.Variant('mi', None), GLib.Variant('a(ii)', [(1, 2)])])
        size = generator.choice([0, 1, 2, 5])
        if kind == 6:
            return tuple(value(depth + 1) for _ in range(size))
        if kind == 7:
            return [value(depth + 1) for _ in range(size)]
        if kind == 8:
            return [(generator.randrange(9), 'x' * generator.randrange(3)) for _ in range(size * 20)]
        if kind == 9:
            return {'k%d' % i: value(depth + 1) for i in range(size)}
        return {i * 1000: value(depth + 1) for i in range(size)}

    for _ in range(300):
        item = value()
        ours, reference = Ly.to_variant(item), override._py_to_variant(item)
        assert ours.get_type_string() == reference.get_type_string(), item
        assert ours.get_data_as_bytes().get_data() == reference.get_normal_form().get_data_as_bytes().get_data(), item
        assert Ly.from_variant(ours) == override._py_from_variant(reference), item


def test_untrusted_bytes_read_as_glib_reads_them():
    # any bytes, as any type: the C reader gives what GLib's accessors
    # give (its normal form of them), and never crashes (it did on a
    # fixed-size value made from bytes of another size: GLib keeps no data)
    generator = random.Random(7)
    basic = 'bynqiuxtdsog'

    def random_type(depth=0):
        kind = generator.randrange(11 if depth < 3 else 6)
        if kind < 5:
            return generator.choice(basic)
        if kind == 5:
            return 'v'
        if kind == 6:
            return 'm' + random_type(depth + 1)
        if kind in (7, 8):
            return 'a' + random_type(depth + 1)
        if kind == 9:
            return 'a{' + generator.choice(basic) + random_type(depth + 1) + '}'
        return '(' + ''.join(random_type(depth + 1) for _ in range(generator.randrange(4))) + ')'

    for _ in range(3000):
        type_string = random_type()
        data = bytes(generator.choice([0, 0, 1, 2, 97, 115, 255, generator.randrange(256)])
                     for _ in range(generator.randrange(40)))
        untrusted = GLib.Variant.new_from_bytes(GLib.VariantType(type_string), GLib.Bytes(data), False)
        assert repr(Ly.from_variant(untrusted)) == repr(override._py_from_variant(untrusted.get_normal_form())), \
            (type_string, data)


lytap.run(globals())
