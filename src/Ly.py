# Ly.py: PyGObject overrides for Ly, so that Python code reads like the
# original liteyuki.comm:
#
#     from gi.repository.Ly import active_channel, passive_channel, shared_memory
#
#     @passive_channel.on_receive(filter_func=lambda data: isinstance(data, str))
#     async def on_passive_receive(data):
#         print(f"Passive receive: {data}")
#
#     for data in active_channel:
#         shared_memory.set("last", {"text": data})
#
# Python values cross as GVariants: to_variant() and from_variant() say
# how.  The synchronous calls take and return Python values; the
# *_variant() calls and the signals keep GLib.Variant for typed access.
# The conversions and the per-message paths are in C (gi.overrides._Ly,
# src/python/); without it the same API runs in Python, slowly.
#
# Where handlers run (see _Dispatcher): on the running asyncio loop of
# an asyncio program, in the thread of a GLib main loop, or, in a program
# that runs neither, in the blocking call that waits or in one thread of
# ours.  The _async methods without a callback return awaitables.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import asyncio
import collections
import collections.abc
import functools
import inspect
import os
import signal
import sys
import threading
import traceback

from gi.repository import Gio, GLib

from ..module import get_introspection_module
from ..overrides import override

try:
    from . import _Ly as _fast
except ImportError:
    _fast = None

Ly = get_introspection_module('Ly')

__all__ = []

_INT64_MIN, _INT64_MAX, _UINT64_MAX = -2 ** 63, 2 ** 63 - 1, 2 ** 64 - 1
_MISSING = object()


# Values ----------------------------------------------------------------------

def _py_to_variant(value, type_string=None):
    if isinstance(value, GLib.Variant):
        if type_string is not None and value.get_type_string() != type_string:
            raise TypeError('%r is not a value of GVariant type %s' % (value, type_string))
        return value
    if type_string is not None:
        try:
            return GLib.Variant(type_string, value)
        except (TypeError, ValueError, OverflowError) as error:
            raise TypeError('%r is not a value of GVariant type %s: %s'
                            % (value, type_string, error)) from None
    if value is None:
        return GLib.Variant('mv', None)
    if isinstance(value, bool):
        return GLib.Variant('b', value)
    if isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            return GLib.Variant('x', value)
        if 0 <= value <= _UINT64_MAX:
            return GLib.Variant('t', value)
        raise OverflowError('%d does not fit in 64 bits' % value)
    if isinstance(value, float):
        return GLib.Variant('d', value)
    if isinstance(value, str):
        return GLib.Variant('s', value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return GLib.Variant.new_from_bytes(GLib.VariantType('ay'), GLib.Bytes(bytes(value)), True)
    if isinstance(value, tuple):
        return GLib.Variant.new_tuple(*[_py_to_variant(item) for item in value])
    if isinstance(value, list):
        items = [_py_to_variant(item) for item in value]
        if items and len({item.get_type_string() for item in items}) == 1:
            return GLib.Variant.new_array(None, items)
        return GLib.Variant('av', items)
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value):
            key_type = 's'
        elif all(isinstance(key, int) and not isinstance(key, bool) for key in value):
            key_type = 'x'
        else:
            raise TypeError('a dict needs keys that are all str or all int')
        return GLib.Variant('a{%sv}' % key_type,
                            {key: _py_to_variant(item) for key, item in value.items()})
    raise TypeError('a %s has no GVariant form: send a bool, int, float, str, bytes, '
                    'None, or a tuple, list or dict of those, or a GLib.Variant'
                    % type(value).__name__)


def _py_from_variant(variant):
    if variant is None:
        return None
    type_string = variant.get_type_string()
    if 'ay' not in type_string and 'v' not in type_string:
        return variant.unpack()
    if type_string == 'ay':
        return variant.get_data_as_bytes().get_data()
    if type_string == 'v':
        return _py_from_variant(variant.get_variant())
    if type_string.startswith('m'):
        return _py_from_variant(variant.get_maybe())
    children = [variant.get_child_value(i) for i in range(variant.n_children())]
    if type_string.startswith('a{'):
        return {_py_from_variant(entry.get_child_value(0)): _py_from_variant(entry.get_child_value(1))
                for entry in children}
    if type_string.startswith('a'):
        return [_py_from_variant(child) for child in children]
    return tuple(_py_from_variant(child) for child in children)


if _fast is not None:
    _to_variant, _from_variant = _fast.to_variant, _fast.from_variant
else:
    _to_variant, _from_variant = _py_to_variant, _py_from_variant


def to_variant(value, type_string=None):
    """The GVariant form of a Python value.

    With type_string, value is built as that GVariant type (as
    GLib.Variant(type_string, value) does).  Without, the type follows the
    value: bool is 'b', int 'x' (or 't' above the int64 range), float 'd',
    str 's', bytes, bytearray and memoryview 'ay', None '@mv nothing',
    tuple a tuple of the types of its items, list 'aT' when every item has
    the type T and 'av' otherwise, dict 'a{sv}' (str keys) or 'a{xv}' (int
    keys).  A GLib.Variant is taken as it is.  Anything else raises
    TypeError (OverflowError for an int beyond 64 bits).
    """
    return _to_variant(value, type_string)


def from_variant(variant):
    """The Python value of a GLib.Variant: what GLib.Variant.unpack()
    returns, but 'ay' gives bytes, a variant its value and a nothing maybe
    None."""
    return _from_variant(variant)


__all__ += ['to_variant', 'from_variant']


def _message_type_string(channel):
    message_type = channel.get_message_type()
    return message_type.dup_string() if message_type is not None else None


# The per-message paths: one C call each with the extension.
if _fast is not None:
    _channel_send = _fast.channel_send
    _channel_receive = _fast.channel_receive
    _connect_received = _fast.connect_received
    _connect_published = _fast.connect_published
    _storage_set = _fast.storage_set
    _storage_get = _fast.storage_get
    _storage_get_all = _fast.storage_get_all
    _storage_compare_and_set = _fast.storage_compare_and_set
    _storage_publish = _fast.storage_publish
else:
    def _channel_send(channel, value):
        Ly.Channel.send(channel, _py_to_variant(value, _message_type_string(channel)))

    def _channel_receive(channel, timeout_msec=-1, cancellable=None, as_variant=False):
        if timeout_msec < 0:
            variant = Ly.Channel.receive(channel, cancellable)
        else:
            variant = Ly.Channel.receive_timeout(channel, timeout_msec, cancellable)
        return variant if as_variant else _py_from_variant(variant)

    def _deliver(handler, filter_func, schedule, value):
        accepted = True if filter_func is None else filter_func(value)
        if inspect.isawaitable(accepted):
            schedule(accepted, handler, value)
        elif accepted:
            result = handler(value)
            if inspect.isawaitable(result):
                schedule(result, None, None)

    def _connect_received(channel, filter_func, handler, schedule):
        return channel.connect('received', lambda _channel, message: _deliver(
            handler, filter_func, schedule, _py_from_variant(message)))

    def _connect_published(storage, topic, handler, schedule):
        return storage.connect('published::' + topic, lambda _storage, _topic, value: _deliver(
            handler, None, schedule, _py_from_variant(value)))

    def _storage_set(storage, key, value):
        Ly.Storage.set(storage, key, _py_to_variant(value))

    def _storage_get(storage, key, default=None, as_variant=False):
        variant = Ly.Storage.get(storage, key)
        if variant is None:
            return default
        return variant if as_variant else _py_from_variant(variant)

    def _storage_get_all(storage):
        return _py_from_variant(Ly.Storage.get_all(storage))

    def _storage_compare_and_set(storage, key, old, new):
        return Ly.Storage.compare_and_set(storage, key,
                                          None if old is None else _py_to_variant(old),
                                          None if new is None else _py_to_variant(new))

    def _storage_publish(storage, topic, value):
        Ly.Storage.publish(storage, topic, _py_to_variant(value))


# Where handlers run ----------------------------------------------------------
#
# In order of preference:
# 1. An asyncio loop runs (now, or later: the loops that asyncio creates
#    are watched for): the default GLib main context is dispatched by that
#    loop (_AsyncioPump), so handlers, coroutines and completions run on
#    the program's own loop thread, and a polite stop of a child ends
#    the program the way asyncio ends it (its finally blocks run).
# 2. A GLib main loop runs the default context (a GNOME application):
#    handlers run there, in its thread.  Nothing of ours takes it.
# 3. Nothing runs it: a blocking receive() or storage call runs it while
#    it waits (the reference document's child).  When nothing has run it
#    for a while, one daemon thread of ours does, until a loop of the
#    program wants it back.
# Coroutine handlers run on the program's asyncio loop when there is one,
# else on one asyncio loop thread of ours; in the order of their messages.

_WATCH_INTERVAL = 0.05     # s between looks at who runs the context
_WATCH_IDLE_LOOKS = 4      # looks with nobody running it before our thread does


def _running_loop():
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _report_exception(future):
    if not future.cancelled() and future.exception() is not None:
        error = future.exception()
        traceback.print_exception(type(error), error, error.__traceback__)


async def _awaited(awaitable, then, value):
    result = await awaitable
    if then is not None:
        if not result:
            return
        result = then(value)
        if inspect.isawaitable(result):
            await result


class _SelectorHook:
    """asyncio's selector, with the GLib context prepared before each
    select(): what this thread changed in GLib sources between two
    rounds (a send from a task, a new timeout) wakes nobody, because
    GLib expects the owner to look again before it polls."""

    def __init__(self, selector, pump):
        self._selector = selector
        self._pump = pump

    def select(self, timeout=None):
        wait = self._pump.before_select()
        if wait is not None and (timeout is None or wait < timeout):
            timeout = wait
        return self._selector.select(timeout)

    def __getattr__(self, name):
        return getattr(self._selector, name)


class _AsyncioPump:
    """The default GLib main context, dispatched by an asyncio loop."""

    # without a selector to hook (another loop type), how late a change
    # made outside a GLib dispatch may be noticed
    _UNHOOKED_MAX_WAIT_MS = 10

    def __init__(self, loop):
        self.loop = loop
        self.thread = threading.get_ident()
        self._pump = _fast.ContextPump()     # RuntimeError: another thread owns it
        self._fd = self._pump.fileno()
        self._next = None
        self._selector = getattr(loop, '_selector', None)
        self._hooked = self._selector is not None and hasattr(loop, '_ready')
        if self._hooked:
            loop._selector = _SelectorHook(self._selector, self)
        loop.add_reader(self._fd, self._run)
        self._run()

    def before_select(self):
        """The seconds select() may wait for the context (None: forever)."""
        timeout = self._pump.iterate()
        if self.loop._ready:
            return 0        # a handler scheduled work on the loop
        return None if timeout < 0 else timeout / 1000

    def _run(self):
        if self._next is not None:
            self._next.cancel()
            self._next = None
        timeout = self._pump.iterate()
        if self._hooked:
            return          # before_select() looks again
        if timeout < 0 or timeout > self._UNHOOKED_MAX_WAIT_MS:
            timeout = self._UNHOOKED_MAX_WAIT_MS
        if timeout == 0:
            self._next = self.loop.call_soon(self._run)
        else:
            self._next = self.loop.call_later(timeout / 1000, self._run)

    def close(self):
        if self._next is not None:
            self._next.cancel()
        if self._hooked and isinstance(getattr(self.loop, '_selector', None), _SelectorHook):
            self.loop._selector = self._selector
        try:
            self.loop.remove_reader(self._fd)
        except (RuntimeError, ValueError, OSError):
            pass        # the loop is closed already
        self._pump.close()


class _Dispatcher:
    def __init__(self):
        self._lock = threading.Lock()
        # fields below are under _lock
        self._pump = None            # _AsyncioPump of the program's loop
        self._thread = None          # our GLib loop thread, and its loop
        self._thread_loop = None
        self._watcher = None
        self._watch_stop = threading.Event()
        self._private_loop = None    # our asyncio loop, for coroutines
        self._policy_hooked = False
        self.user_stop_handler = False
        self._tasks = set()

    # -- who dispatches --------------------------------------------------

    def handlers_added(self):
        """A handler was connected: make sure that something will run it."""
        loop = _running_loop()
        if loop is not None and self.attach(loop):
            return
        if GLib.main_depth() > 0:
            return          # this thread runs a GLib loop
        self._hook_asyncio()
        self._start_watcher()

    def attach(self, loop):
        """Lets the asyncio loop (running in this thread) dispatch the
        default main context; False when it cannot (another thread owns
        the context, or there is no C extension)."""
        if _fast is None:
            return False
        with self._lock:
            pump = self._pump
            if pump is not None and pump.loop is loop:
                return True
            if pump is not None and not pump.loop.is_closed():
                return False      # another loop has it
            self._pump = None
        self._stop_thread()
        try:
            pump = _AsyncioPump(loop)
        except RuntimeError:
            return False          # a GLib loop in another thread runs it
        with self._lock:
            self._pump = pump
        self._stop_watcher()
        self._watch_loop_close(loop, pump)
        self._install_stop_handler()
        return True

    def _watch_loop_close(self, loop, pump):
        original = loop.close

        @functools.wraps(original)
        def close():
            self.detach(pump)
            return original()
        try:
            loop.close = close
        except (AttributeError, TypeError):
            pass        # a loop type without instance attributes

    def detach(self, pump):
        with self._lock:
            if self._pump is not pump:
                return
            self._pump = None
        pump.close()

    def _hook_asyncio(self):
        """Attach to every asyncio loop the program creates, once it runs
        (asyncio.run() creates its loop through the policy)."""
        with self._lock:
            if self._policy_hooked:
                return
            self._policy_hooked = True
        policy = asyncio.get_event_loop_policy()
        original = policy.new_event_loop

        @functools.wraps(original)
        def new_event_loop():
            loop = original()
            loop.call_soon(self.attach, loop)
            return loop
        policy.new_event_loop = new_event_loop

    def _start_watcher(self):
        with self._lock:
            if self._watcher is not None or self._thread is not None or self._pump is not None:
                return
            self._watch_stop.clear()
            self._watcher = threading.Thread(target=self._watch, name='Ly watcher', daemon=True)
            self._watcher.start()

    def _stop_watcher(self):
        with self._lock:
            watcher, self._watcher = self._watcher, None
        if watcher is not None and watcher is not threading.current_thread():
            self._watch_stop.set()
            watcher.join()

    def _watch(self):
        context = GLib.MainContext.default()
        idle = 0
        while not self._watch_stop.wait(_WATCH_INTERVAL):
            if context.acquire():
                context.release()
                idle += 1
            else:
                idle = 0
            if idle >= _WATCH_IDLE_LOOKS:
                with self._lock:
                    self._watcher = None
                self.start_thread()
                return

    def start_thread(self):
        with self._lock:
            if self._thread is not None or self._pump is not None:
                return
            context = GLib.MainContext.default()
            if not context.acquire():
                return          # someone runs it after all
            context.release()
            self._thread_loop = GLib.MainLoop.new(context, False)
            self._thread = threading.Thread(target=_glib_loop_run, args=(self._thread_loop,),
                                            name='Ly main context', daemon=True)
            self._thread.start()

    def _stop_thread(self):
        with self._lock:
            thread, loop = self._thread, self._thread_loop
            self._thread = self._thread_loop = None
        if thread is not None and thread is not threading.current_thread():
            loop.quit()
            thread.join(10)

    def program_runs_glib(self, context):
        """The program runs a GLib loop on context: it is the dispatcher."""
        if context is None or context == GLib.MainContext.default():
            self._stop_watcher()
            self._stop_thread()

    # -- coroutines ------------------------------------------------------

    def schedule(self, awaitable, then, value):
        """Runs awaitable (then then(value), if it was true) on the
        program's loop, or on ours when the program has none."""
        coroutine = _awaited(awaitable, then, value)
        pump = self._pump
        if pump is not None and not pump.loop.is_closed():
            if threading.get_ident() == pump.thread:
                self._start_task(pump.loop, coroutine)
            else:
                pump.loop.call_soon_threadsafe(self._start_task, pump.loop, coroutine)
            return
        loop = _running_loop()
        if loop is not None:
            self._start_task(loop, coroutine)
            return
        asyncio.run_coroutine_threadsafe(coroutine, self._own_loop()).add_done_callback(_report_exception)

    def _start_task(self, loop, coroutine):
        task = loop.create_task(coroutine)
        self._tasks.add(task)         # asyncio keeps only weak references
        task.add_done_callback(self._task_done)

    def _task_done(self, task):
        self._tasks.discard(task)
        _report_exception(task)

    def _own_loop(self):
        with self._lock:
            if self._private_loop is None:
                self._private_loop = asyncio.new_event_loop()
                threading.Thread(target=self._private_loop.run_forever,
                                 name='Ly asyncio', daemon=True).start()
            return self._private_loop

    # -- polite stop -----------------------------------------------------

    def _install_stop_handler(self):
        if self.user_stop_handler or Ly.is_main_process():
            return
        Ly.set_stop_handler(self._on_polite_stop)

    def _on_polite_stop(self, *args):
        pump = self._pump
        if pump is None or pump.loop.is_closed() or self.user_stop_handler:
            _end_process()
            return
        _close_and_flush_own_channels()
        pump.loop.call_soon(_end_program)


def _end_process():
    """A polite stop without asyncio: a program that handles SIGTERM
    gets it; any other ends with status 0, its output flushed."""
    if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
        os.kill(os.getpid(), signal.SIGTERM)
        return
    _close_and_flush_own_channels()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    os._exit(0)


def _close_and_flush_own_channels():
    """What the hub sent before the stop is written; at most a second."""
    cancellable = Gio.Cancellable()
    timer = threading.Timer(1.0, cancellable.cancel)
    timer.start()
    try:
        for channel in (Ly.active_channel(), Ly.passive_channel()):
            if channel is not None:
                channel.close()
                try:
                    Ly.Channel.flush(channel, cancellable)
                except GLib.Error:
                    pass
    finally:
        timer.cancel()


def _end_program():
    # out of the loop: asyncio.run() cancels the tasks (their finally
    # blocks run), closes the loop, and the interpreter exits with 0
    raise SystemExit(0)


_dispatcher = _Dispatcher()


def dispatch_in_thread():
    """Runs the default GLib main context in a daemon thread of Ly's,
    unless a loop of the program (asyncio or GLib) already does.  Only
    for programs that want handlers in a thread of their own while their
    main thread is busy elsewhere; handlers start it when needed."""
    loop = _running_loop()
    if loop is not None and _dispatcher.attach(loop):
        return
    _dispatcher.start_thread()


def set_stop_handler(handler, *user_data):
    """Ly.set_stop_handler(): the program decides what a polite stop does."""
    _dispatcher.user_stop_handler = True
    return Ly.set_stop_handler(handler, *user_data)


__all__ += ['dispatch_in_thread', 'set_stop_handler']


def _hand_over_before(run):
    @functools.wraps(run)
    def wrapper(self, *args, **kwargs):
        context = self.get_context() if isinstance(self, GLib.MainLoop) else None
        _dispatcher.program_runs_glib(context)
        return run(self, *args, **kwargs)
    return wrapper


# A GLib loop of the program takes the default context from our thread
# (which runs the loop unwrapped).
_glib_loop_run = GLib.MainLoop.run
GLib.MainLoop.run = _hand_over_before(GLib.MainLoop.run)
Gio.Application.run = _hand_over_before(Gio.Application.run)


# Awaitables ------------------------------------------------------------------

def _start_on_loop(loop, start, finish, cancellable, on_lost=None):
    """Starts start(cancellable, callback) and returns a future
    of loop for finish(source, result).  Cancelling the future cancels the
    operation; a result that comes back to a cancelled future goes to
    on_lost instead of being dropped."""
    _dispatcher.attach(loop)
    future = loop.create_future()
    thread = threading.get_ident()
    if cancellable is None:
        cancellable = Gio.Cancellable()

    def settle(value, error):
        if future.cancelled():
            if error is None and on_lost is not None:
                on_lost(value)
        elif error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def done(source, result, *_user_data):
        try:
            value, error = finish(source, result), None
        except GLib.Error as exception:
            value, error = None, exception
        if threading.get_ident() == thread:
            settle(value, error)
        else:
            try:
                loop.call_soon_threadsafe(settle, value, error)
            except RuntimeError:
                if error is None and on_lost is not None:
                    on_lost(value)     # the loop is closed

    def on_done(done_future):
        if done_future.cancelled():
            cancellable.cancel()

    start(cancellable, done)
    future.add_done_callback(on_done)
    return future


def _call_async(start, finish, cancellable, callback, user_data, lazy=False, on_lost=None):
    """The GIO pattern with an asyncio face: with a callback, as GIO does;
    without, an awaitable of the running loop (lazy: started when it is
    awaited, so that one never awaited takes nothing), or, with no loop
    running, fire and forget."""
    if callback is not None:
        start(cancellable, callback, *user_data)
        return None
    loop = _running_loop()
    if lazy:
        async def when_awaited():
            return await _start_on_loop(asyncio.get_running_loop(), start, finish, cancellable, on_lost)
        return when_awaited()
    if loop is None:
        start(cancellable, None)
        return None
    return _start_on_loop(loop, start, finish, cancellable, on_lost)


# Channel ---------------------------------------------------------------------

class Channel(Ly.Channel):
    """A Ly.Channel that takes and gives Python values."""

    def _to_variant(self, value):
        return _to_variant(value, _message_type_string(self))

    def send(self, value):
        """Queues value (a Python value or a GLib.Variant) and returns at
        once.  Converted to the channel's message-type when it has one
        (TypeError when it cannot be); GLib.Error FULL when the queue is
        over max-queued-bytes."""
        _channel_send(self, value)
        return True

    def send_async(self, value, cancellable=None, callback=None, *user_data):
        """Waits for room in the queue, then until value is written.
        Without a callback: an awaitable (in a running asyncio loop)."""
        variant = self._to_variant(value)
        return _call_async(lambda c, cb, *data: Ly.Channel.send_async(self, variant, c, cb, *data),
                           lambda source, result: Ly.Channel.send_finish(source, result),
                           cancellable, callback, user_data)

    def flush_async(self, cancellable=None, callback=None, *user_data):
        """Completes when everything queued is written.  Without a
        callback: an awaitable (in a running asyncio loop)."""
        return _call_async(lambda c, cb, *data: Ly.Channel.flush_async(self, c, cb, *data),
                           lambda source, result: Ly.Channel.flush_finish(source, result),
                           cancellable, callback, user_data)

    def _take_returned(self):
        returned = self.__dict__.get('_ly_returned')
        return returned.popleft() if returned else None

    def _return(self, variant):
        # a message that came for an awaitable cancelled meanwhile
        self.__dict__.setdefault('_ly_returned', collections.deque()).append(variant)

    def receive(self, cancellable=None, timeout=None):
        """The next message as a Python value; waits for it, at most timeout
        seconds when given (then GLib.Error TIMED_OUT)."""
        returned = self._take_returned()
        if returned is not None:
            return _from_variant(returned)
        return _channel_receive(self, -1 if timeout is None else max(0, int(timeout * 1000)),
                                cancellable, False)

    def receive_variant(self, cancellable=None, timeout=None):
        """The next message as a GLib.Variant."""
        returned = self._take_returned()
        if returned is not None:
            return returned
        return _channel_receive(self, -1 if timeout is None else max(0, int(timeout * 1000)),
                                cancellable, True)

    def receive_async(self, cancellable=None, callback=None, *user_data):
        """With a callback, as GIO: receive_finish() gives the GLib.Variant.
        Without: a coroutine that gives the next message as a Python value;
        it takes a message only once awaited, and one that is cancelled
        takes none."""
        if callback is not None:
            return Ly.Channel.receive_async(self, cancellable, callback, *user_data)
        returned = self._take_returned()
        if returned is not None:
            async def at_once():
                return _from_variant(returned)
            return at_once()
        return _call_async(lambda c, cb, *data: Ly.Channel.receive_async(self, c, cb, *data),
                           lambda source, result: _from_variant(Ly.Channel.receive_finish(source, result)),
                           cancellable, None, (), lazy=True,
                           on_lost=lambda value: self._return(_to_variant(value)))

    def __iter__(self):
        """Receives until the channel closes."""
        while True:
            try:
                yield self.receive()
            except GLib.Error as error:
                if error.matches(Ly.channel_error_quark(), Ly.ChannelError.CLOSED) or \
                   error.matches(Ly.channel_error_quark(), Ly.ChannelError.DISCONNECTED):
                    return
                raise

    def on_receive(self, filter_func=None):
        """A decorator: the function, sync or async, is called with each
        message (a Python value) that filter_func, sync or async, accepts.
        This makes the channel passive."""
        def decorator(handler):
            _connect_received(self, filter_func, handler, _dispatcher.schedule)
            _dispatcher.handlers_added()
            return handler
        return decorator


Channel = override(Channel)
__all__.append('Channel')
if _fast is not None:
    # the same three in C, without a Python frame per message
    _fast.install_channel_methods(Channel)


# Storage ---------------------------------------------------------------------

class Storage(Ly.Storage):
    """A Ly.Storage that takes and gives Python values; also a mutable
    mapping (collections.abc.MutableMapping) of its keys."""

    def set(self, key, value):
        _storage_set(self, key, value)
        return True

    def get(self, key, default=None):
        """The value of key, or default when there is none."""
        return _storage_get(self, key, default)

    def get_variant(self, key):
        """The value of key as a GLib.Variant, or None."""
        return _storage_get(self, key, None, True)

    def delete(self, key, ignore_key_error=True):
        """Deletes key; KeyError when it does not exist and ignore_key_error
        is false."""
        if ignore_key_error:
            return Ly.Storage.delete(self, key)
        self.pop(key)
        return True

    def get_all(self):
        """A dict of every key and its value."""
        return _storage_get_all(self)

    def compare_and_set(self, key, old, new):
        """Sets key to new only if its value is old, atomically across
        every process; None as old means absent, None as new deletes.
        True when it swapped."""
        return _storage_compare_and_set(self, key, old, new)

    def publish(self, topic, value):
        _storage_publish(self, topic, value)
        return True

    # -- async -----------------------------------------------------------

    def set_async(self, key, value, cancellable=None, callback=None, *user_data):
        """Without a callback: an awaitable in a running asyncio loop; with
        no loop, queued without a completion (sets of one main loop
        iteration travel together)."""
        if callback is None and cancellable is None and _fast is not None and _running_loop() is None:
            _fast.storage_set_async(self, key, value)
            return None
        variant = _to_variant(value)
        return _call_async(lambda c, cb, *data: Ly.Storage.set_async(self, key, variant, c, cb, *data),
                           lambda source, result: Ly.Storage.set_finish(source, result),
                           cancellable, callback, user_data)

    def get_async(self, key, cancellable=None, callback=None, *user_data):
        """Without a callback: an awaitable of the value (None when absent)."""
        if callback is not None:
            return Ly.Storage.get_async(self, key, cancellable, callback, *user_data)
        return _call_async(lambda c, cb, *data: Ly.Storage.get_async(self, key, c, cb, *data),
                           lambda source, result: _from_variant(Ly.Storage.get_finish(source, result)),
                           cancellable, None, ())

    def compare_and_set_async(self, key, old, new, cancellable=None, callback=None, *user_data):
        """Without a callback: an awaitable of whether it swapped."""
        old_variant = None if old is None else _to_variant(old)
        new_variant = None if new is None else _to_variant(new)
        return _call_async(lambda c, cb, *data: Ly.Storage.compare_and_set_async(
                               self, key, old_variant, new_variant, c, cb, *data),
                           lambda source, result: Ly.Storage.compare_and_set_finish(source, result)[1],
                           cancellable, callback, user_data)

    def publish_async(self, topic, value, cancellable=None, callback=None, *user_data):
        """Without a callback: an awaitable of the publication."""
        variant = _to_variant(value)
        return _call_async(lambda c, cb, *data: Ly.Storage.publish_async(self, topic, variant, c, cb, *data),
                           lambda source, result: Ly.Storage.publish_finish(source, result),
                           cancellable, callback, user_data)

    def on_subscriber_receive(self, topic):
        """A decorator: subscribes to topic and calls the function, sync or
        async, with each value published on it."""
        def decorator(handler):
            self.subscribe(topic)
            _connect_published(self, topic, handler, _dispatcher.schedule)
            _dispatcher.handlers_added()
            return handler
        return decorator

    def on_changes_missed(self, handler):
        """A decorator: calls the function, sync or async, with no
        argument, when the store behind the storage (a Redis server) was
        out of reach and is back: changes made meanwhile were not
        announced, so what it depends on should be read again."""
        def call(_storage):
            result = handler()
            if inspect.isawaitable(result):
                _dispatcher.schedule(result, None, None)
        self.connect('changes-missed', call)
        _dispatcher.handlers_added()
        return handler

    # -- the mapping -----------------------------------------------------

    def __getitem__(self, key):
        value = _storage_get(self, key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __setitem__(self, key, value):
        _storage_set(self, key, value)

    def __delitem__(self, key):
        self.pop(key)

    def __contains__(self, key):
        return isinstance(key, str) and self.contains(key)

    def __iter__(self):
        return iter(self.list_keys())

    def __len__(self):
        return len(self.list_keys())

    def __bool__(self):
        return True     # a store, empty or not, is a store: no surprise in `if storage:`

    def keys(self):
        return collections.abc.KeysView(self)

    def items(self):
        """A view of a snapshot taken in one request."""
        return self.get_all().items()

    def values(self):
        """A view of a snapshot taken in one request."""
        return self.get_all().values()

    def update(self, other=(), /, **kwargs):
        if isinstance(other, collections.abc.Mapping):
            other = other.items()
        elif hasattr(other, 'keys'):
            other = ((key, other[key]) for key in other.keys())
        for key, value in other:
            self[key] = value
        for key, value in kwargs.items():
            self[key] = value

    def pop(self, key, default=_MISSING):
        """Removes key and returns its value, atomically."""
        while True:
            variant = self.get_variant(key)
            if variant is None:
                if default is _MISSING:
                    raise KeyError(key)
                return default
            if Ly.Storage.compare_and_set(self, key, variant, None):
                return _from_variant(variant)

    def popitem(self):
        for key in self.list_keys():
            value = self.pop(key, _MISSING)
            if value is not _MISSING:
                return key, value
        raise KeyError('popitem(): the storage is empty')

    def setdefault(self, key, default=None):
        """The value of key; when there is none, stores default first,
        atomically."""
        while True:
            if _storage_compare_and_set(self, key, None, default):
                return default
            value = _storage_get(self, key, _MISSING)
            if value is not _MISSING:
                return value

    def clear(self):
        for key in self.list_keys():
            Ly.Storage.delete(self, key)


Storage = override(Storage)
collections.abc.MutableMapping.register(Storage)
__all__.append('Storage')


# This process's channels and storage -------------------------------------------

class _Lazy:
    """Ly.active_channel() is a function; Ly.active_channel.receive() also
    works, as the original's module-level singletons did."""

    def __init__(self, getter, what):
        self._getter = getter
        self._what = what

    def __call__(self):
        return self._getter()

    def _target(self):
        target = self._getter()
        if target is None:
            raise RuntimeError('there is no %s: only a child process started by a hub has one'
                               % self._what)
        return target

    def __getattr__(self, name):
        return getattr(self._target(), name)

    # special methods are looked up on the type, not through __getattr__
    def __iter__(self):
        return iter(self._target())

    def __getitem__(self, key):
        return self._target()[key]

    def __setitem__(self, key, value):
        self._target()[key] = value

    def __delitem__(self, key):
        del self._target()[key]

    def __contains__(self, key):
        return key in self._target()

    def __len__(self):
        return len(self._target())

    def __bool__(self):
        return self._getter() is not None

    def __repr__(self):
        return '<Ly.%s>' % self._what


class _LazyStorage(_Lazy):
    pass


collections.abc.MutableMapping.register(_LazyStorage)

active_channel = _Lazy(Ly.active_channel, 'active_channel')
passive_channel = _Lazy(Ly.passive_channel, 'passive_channel')
shared_memory = _LazyStorage(Ly.Storage.get_default, 'shared_memory')
__all__ += ['active_channel', 'passive_channel', 'shared_memory']
