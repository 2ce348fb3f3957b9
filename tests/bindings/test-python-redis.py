#!/usr/bin/python3
# test-python-redis.py: the storage on a real Redis server, from Python:
# the API, an asyncio program hearing another store's changes and
# publications on its running loop, and the changes-missed report after
# Redis went away and came back.  Each test starts its own redis-server on
# a unix socket in a temporary directory and stops it by pid.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import gi
import lytap
gi.require_version('GLib', '2.0')
gi.require_version('Ly', '1')
from gi.repository import GLib, Ly  # noqa: E402


class Redis:
    """A redis-server of the test's own, stopped by pid."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix='ly-redis-')
        self.socket = os.path.join(self.dir, 'redis.sock')
        self.uri = 'unix://' + self.socket
        self.process = None
        self.start()

    def start(self):
        server = shutil.which('redis-server')
        assert server is not None, 'redis-server is not installed (CI installs it)'
        self.process = subprocess.Popen(
            [server, '--port', '0', '--unixsocket', self.socket, '--save', '', '--appendonly', 'no',
             '--daemonize', 'no', '--dir', self.dir], stdout=subprocess.DEVNULL)
        # the socket file appears at bind(), before listen(): ready once
        # it accepts a connection
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.socket(socket.AF_UNIX) as probe:
                    probe.connect(self.socket)
                    probe.sendall(b'PING\r\n')
                    if probe.recv(16)[:1] in (b'+', b'-'):   # PONG, or NOAUTH
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, 'redis-server did not start'
            time.sleep(0.01)

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket)

    def close(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def iterate_until(predicate, timeout=10):
    context = GLib.MainContext.default()
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, 'timed out'
        context.iteration(False)
        time.sleep(0.001)


def test_errors_are_python_exceptions():
    try:
        Ly.Storage.new_for_uri('unix:///nonexistent/redis.sock')
    except GLib.Error as error:
        assert error.matches(Ly.storage_error_quark(), Ly.StorageError.UNAVAILABLE), error
        assert '/nonexistent/redis.sock' in error.message
    else:
        raise AssertionError('no error for a server that is not there')

    try:
        Ly.Storage.new_for_uri('memcached://localhost')
    except GLib.Error as error:
        assert error.matches(Ly.storage_error_quark(), Ly.StorageError.INVALID_URI), error
    else:
        raise AssertionError('no error for a URI of another kind')


def test_python_values_and_mapping():
    redis = Redis()
    try:
        storage = Ly.Storage.new_for_uri(redis.uri)
        storage['event'] = {'type': 'message', 'user_id': 123456789, 'tags': ['a', 'b']}
        storage['bytes'] = b'\x00\xff' * 1000
        assert storage['event'] == {'type': 'message', 'user_id': 123456789, 'tags': ['a', 'b']}
        assert storage['bytes'] == b'\x00\xff' * 1000
        assert sorted(storage) == ['bytes', 'event']
        assert storage.compare_and_set('n', None, 1)
        assert not storage.compare_and_set('n', 2, 3)
        assert storage.pop('n') == 1
        assert 'n' not in storage
    finally:
        redis.close()


def test_asyncio_hears_another_hub():
    redis = Redis()
    try:
        here = Ly.Storage.new_for_uri(redis.uri)
        there = Ly.Storage.new_for_uri(redis.uri)
        heard = []

        @here.on_subscriber_receive('news')
        async def on_news(value):
            heard.append(('news', value, asyncio.get_running_loop()))

        here.connect('changed::counter', lambda _s, _k, value: heard.append(('counter', value.unpack(), None)))

        async def main():
            for i in range(5):
                await there.set_async('counter', GLib.Variant('u', i + 1))
                await there.publish_async('news', {'n': i})
            deadline = time.monotonic() + 10
            while len([h for h in heard if h[0] == 'news']) < 5 or len(heard) < 10:
                assert time.monotonic() < deadline, heard
                await asyncio.sleep(0.01)
            return asyncio.get_running_loop()

        loop = asyncio.run(main())
        assert [h[1] for h in heard if h[0] == 'counter'] == [1, 2, 3, 4, 5]
        news = [h for h in heard if h[0] == 'news']
        assert [h[1] for h in news] == [{'n': i} for i in range(5)]
        assert all(h[2] is loop for h in news), 'a coroutine handler ran off the program\'s loop'
    finally:
        redis.close()


def test_changes_missed_after_redis_comes_back():
    redis = Redis()
    try:
        storage = Ly.Storage.new_for_uri(redis.uri)
        storage.props.timeout = 1.0
        missed = []

        @storage.on_changes_missed
        def on_missed():
            missed.append(True)

        storage['k'] = 1
        redis.kill()
        started = time.monotonic()
        try:
            storage['k'] = 2
        except GLib.Error as error:
            assert error.matches(Ly.storage_error_quark(), Ly.StorageError.UNAVAILABLE), error
        else:
            raise AssertionError('a set succeeded with Redis gone')
        assert time.monotonic() - started < 3

        redis.start()
        iterate_until(lambda: missed)
        storage['k'] = 3
        assert storage['k'] == 3
    finally:
        redis.close()


lytap.run(globals())
