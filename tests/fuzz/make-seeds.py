#!/usr/bin/python3
# make-seeds.py: writes the seed corpora of the fuzz targets
#
#   /usr/bin/python3 tests/fuzz/make-seeds.py
#
# The seeds are committed; run this again when the wire format or a
# request changes.  Frames are built here from the format described in
# src/ly-wire-private.h, independently of the C writer.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os
import struct

from gi.repository import GLib

HERE = os.path.dirname(os.path.abspath(__file__))
HELLO, MESSAGE, GOODBYE = 1, 2, 3


def pad8(n):
    return (n + 7) & ~7


def frame(kind, value=None):
    if value is None:
        return struct.pack('<BBHI', kind, 0, 0, 0) + b'\0' * 8
    type_string = value.get_type_string().encode()
    data = value.get_data_as_bytes().get_data() if value.get_size() else b''
    type_part = type_string + b'\0' * (pad8(len(type_string) + 1) - len(type_string))
    data_part = data + b'\0' * (pad8(len(data)) - len(data))
    return struct.pack('<BBHI', kind, 0, len(type_string), len(data)) + type_part + data_part


def hello(channel):
    return frame(HELLO, GLib.Variant('(usua{sv})', (1, 'fuzz-child', 4242,
                                                     {'channel': GLib.Variant('s', channel)})))


def request(serial, method, args):
    return frame(MESSAGE, GLib.Variant('(usv)', (serial, method, args)))


def batch(sets):
    body = b''
    for key, value in sets:
        body += frame(MESSAGE, GLib.Variant('s', key)) + frame(MESSAGE, value)
    return body


def write(target, name, data):
    directory = os.path.join(HERE, 'corpus', target)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), 'wb') as f:
        f.write(data)


def v(type_string, value):
    return GLib.Variant(type_string, value)


def wire_seeds():
    messages = [
        v('s', 'hello'), v('i', -7), v('t', 2**63), v('d', 3.5), v('b', True),
        v('ay', b'\x00\x01binary'), v('as', ['a', 'bb', '']), v('a{sv}', {'k': v('i', 1), 'n': v('s', 'x')}),
        v('(usv)', (3, 'StorageGet', v('(s)', ('key',)))), v('mv', None), v('mv', v('u', 9)),
        v('v', v('v', v('(ii)', (1, 2)))), v('a(sai)', [('x', [1, 2, 3]), ('y', [])]), v('()', ()),
    ]
    stream = hello('nonebot-active') + b''.join(frame(MESSAGE, m) for m in messages) + frame(GOODBYE)
    # byte 0: the sizes of the reads (0: as much as fits), byte 1: the size limit
    write('wire', 'stream-whole', b'\x00\x10' + stream)
    write('wire', 'stream-bytewise', b'\x01\x10' + stream)
    write('wire', 'stream-chunks-7', b'\x07\x10' + stream)
    write('wire', 'limit-small', b'\x03\x01' + stream)
    write('wire', 'hello-only', b'\x00\x10' + hello('x'))
    write('wire', 'goodbye', b'\x00\x10' + frame(GOODBYE))
    write('wire', 'truncated', b'\x00\x10' + stream[:len(stream) // 2 + 3])
    write('wire', 'batch', b'\x00\x10' + batch([('a', v('i', 1)), ('b', v('s', 'two'))]))
    for i, m in enumerate(messages):
        write('wire', 'message-%02d-%s' % (i, m.get_type_string().replace('{', '(').replace('}', ')')),
              b'\x05\x0c' + frame(MESSAGE, m))


def control_seeds():
    h = hello('control')
    requests = {
        'set': request(1, 'StorageSet', v('(sv)', ('counter', v('i', 1)))),
        'get': request(2, 'StorageGet', v('(s)', ('counter',))),
        'delete': request(3, 'StorageDelete', v('(s)', ('counter',))),
        'contains': request(4, 'StorageContains', v('(s)', ('counter',))),
        'list-keys': request(5, 'StorageListKeys', v('()', ())),
        'get-all': request(6, 'StorageGetAll', v('()', ())),
        'cas': request(7, 'StorageCompareAndSet', v('(smvmv)', ('counter', None, v('i', 1)))),
        'cas-delete': request(8, 'StorageCompareAndSet', v('(smvmv)', ('counter', v('i', 1), None))),
        'publish': request(9, 'StoragePublish', v('(sv)', ('topic', v('s', 'news')))),
        'subscribe': request(10, 'StorageSubscribe', v('(s)', ('topic',))),
        'unsubscribe': request(11, 'StorageUnsubscribe', v('(s)', ('topic',))),
        'request-stop': request(12, 'RequestStop', v('()', ())),
        'request-restart': request(13, 'RequestRestart', v('()', ())),
        'unknown': request(14, 'Frobnicate', v('(s)', ('x',))),
        'notification': request(0, 'StorageSet', v('(sv)', ('quiet', v('b', True)))),
        'wrong-args': request(15, 'StorageGet', v('(i)', (1,))),
        'bad-key': request(16, 'StorageSet', v('(sv)', ('', v('i', 1)))),
        'reply': frame(MESSAGE, v('(ubv)', (99, True, v('()', ())))),
        'error-reply': frame(MESSAGE, v('(ubv)', (98, False, v('(ss)', ('org.x.Error', 'no'))))),
    }
    payload = batch([('a', v('i', 1)), ('b', v('s', 'two')), ('a', v('i', 1)), ('', v('i', 0))])
    requests['set-many'] = (frame(MESSAGE, v('(ust)', (20, 'StorageSetMany', len(payload)))) +
                            frame(MESSAGE, v('ay', payload)))
    for name, data in requests.items():
        write('control', name, h + data + frame(GOODBYE))
    everything = h + b''.join(requests.values())
    write('control', 'all-no-goodbye', everything)
    write('control', 'all', everything + frame(GOODBYE))
    write('control', 'no-hello', requests['get'])
    write('control', 'empty', b'')


def config_seeds():
    with open(os.path.join(HERE, '..', '..', 'data', 'hub.conf.example'), 'rb') as f:
        write('config', 'example', f.read())
    write('config', 'minimal', b'[target nonebot]\nExec=/usr/bin/true\n')
    write('config', 'full', b'[hub]\nStopTimeout=5\n\n[target bot]\nExec=/usr/bin/python3 -u bot.py --x "a b"\n'
          b'Restart=on-failure\nStopTimeout=2.5\nEnvironment=A=1 B=two\nWorkingDirectory=/tmp\n'
          b'\n[target web]\nExec=sh -c \'exec sleep 1\'\nRestart=always\n')
    write('config', 'bad-key', b'[target a]\nExec=true\nColour=blue\n')
    write('config', 'bad-group', b'[targets a]\nExec=true\n')
    write('config', 'no-targets', b'[hub]\nStopTimeout=1\n')
    write('config', 'bad-seconds', b'[hub]\nStopTimeout=-3\n[target a]\nExec=true\n')


def value_seeds():
    for i, text in enumerate(["'hello'", '42', 'int64 -9', '3.25', 'true', "['a', 'b']",
                              "{'k': <1>, 'n': <'x'>}", '(1, "two", [3.0])', '@ay []', "b'bytes'",
                              'nothing', 'just <5>', '<<<@(ii) (1, 2)>>>', "objectpath '/a/b'",
                              "{1: 'one'}", '[<1>, <"s">]', '@mv nothing', 'uint32 7', "'unterminated",
                              '[1, "mixed"]', '', '(']):
        write('value', '%02d' % i, text.encode())


def utf8_seeds():
    texts = {
        'ascii': 'NoneBot plugin says hello, ' * 4,
        'cjk': '轻雪机器人，一个基于 NoneBot2 的机器人框架。' * 3,
        'latin': 'Grüße aus Köln — naïve café, ½ € ≠ ¥ ' * 3,
        'emoji': '😀👍🏽🇨🇳 𝄞 𐍈 ᚠ ☃ ' * 4,
    }
    for name, text in texts.items():
        write('utf8', name, text.encode())
    ascii = b'a' * 40
    write('utf8', 'surrogate', ascii + b'\xed\xa0\x80' + ascii)
    write('utf8', 'overlong-2', ascii + b'\xc0\xaf' + ascii)
    write('utf8', 'overlong-3', ascii + b'\xe0\x80\xaf' + ascii)
    write('utf8', 'overlong-4', ascii + b'\xf0\x80\x80\xaf' + ascii)
    write('utf8', 'too-large', ascii + b'\xf4\x90\x80\x80' + ascii)
    write('utf8', 'largest', ascii + b'\xf4\x8f\xbf\xbf' + ascii)
    write('utf8', 'truncated-end', ascii + b'\xe4\xb8')
    write('utf8', 'nul', ascii + b'\x00' + ascii)
    write('utf8', 'lone-continuation', ascii + b'\x80' + ascii)


def storage_file_seeds():
    data = v('a{sv}', {'counter': v('i', 3), 'name': v('s', 'liteyuki'),
                       'nested': v('a{sv}', {'x': v('ad', [1.0, 2.5])})})
    write('storage-file', 'three-keys', b'LYSTORE1' + data.get_data_as_bytes().get_data())
    write('storage-file', 'empty-store', b'LYSTORE1')
    write('storage-file', 'bad-key', b'LYSTORE1' + v('a{sv}', {'': v('i', 1)}).get_data_as_bytes().get_data())
    write('storage-file', 'not-a-store', b'hello world')


def variant_seeds():
    """Type string, NUL, serialised data: normal values of many shapes."""
    values = [
        v('s', 'hello'), v('s', 'é文字 ' * 5), v('o', '/a/b'), v('g', 'a{sv}'), v('b', True),
        v('ab', [True, False]), v('as', ['a', '', 'bc']), v('a{sv}', {'k': v('s', 'x'), 'n': v('x', 5)}),
        v('(ysx)', (1, 'two', 3)), v('(sy)', ('a', 1)), v('(yx)', (1, 2)), v('ms', 'x'), v('ms', None),
        v('mi', 4), v('amay', [None, b'', b'x']), v('aas', [['a'], []]), v('v', v('u', 7)),
        v('av', [v('s', 'a'), v('(ii)', (1, 2)), v('as', ['x'])]), v('()', ()), v('a()', [(), ()]),
        v('a{s(ii)}', {'p': (1, 2)}), v('(a{sv}ay)', ({'a': v('d', 1.5)}, b'zz')),
    ]
    for i, value in enumerate(values):
        data = value.get_data_as_bytes().get_data() if value.get_size() else b''
        write('variant', '%02d' % i, value.get_type_string().encode() + b'\0' + data)


wire_seeds()
variant_seeds()
control_seeds()
config_seeds()
value_seeds()
storage_file_seeds()

utf8_seeds()
