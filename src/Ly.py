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
# *_variant() calls, the async pairs and the signals keep GLib.Variant for
# typed access.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import asyncio
import inspect
import threading

from gi.repository import GLib

from ..module import get_introspection_module
from ..overrides import override

Ly = get_introspection_module('Ly')

__all__ = []

_INT64_MIN, _INT64_MAX, _UINT64_MAX = -2 ** 63, 2 ** 63 - 1, 2 ** 64 - 1


# Values ----------------------------------------------------------------------

def to_variant(value, type_string=None):
    """The GVariant form of a Python value.

    With type_string, value is built as that GVariant type (as
    GLib.Variant(type_string, value) does).  Without, the type follows the
    value: bool is 'b', int 'x' (or 't' above the int64 range), float 'd',
    str 's', bytes 'ay', None '@mv nothing', tuple a tuple of the types
    of its items, list 'aT' when every item has the type T and 'av'
    otherwise, dict 'a{sv}' (str keys) or 'a{xv}' (int keys).  A
    GLib.Variant is taken as it is.  Anything else raises TypeError.
    """
    if isinstance(value, GLib.Variant):
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
        return GLib.Variant('ay', bytes(value))
    if isinstance(value, tuple):
        return GLib.Variant.new_tuple(*[to_variant(item) for item in value])
    if isinstance(value, list):
        items = [to_variant(item) for item in value]
        types = {item.get_type_string() for item in items}
        if len(types) == 1:
            return GLib.Variant.new_array(None, items)
        return GLib.Variant('av', items)
    if isinstance(value, dict):
        return _dict_to_variant(value)
    raise TypeError('a %s has no GVariant form: send a bool, int, float, str, bytes, '
                    'None, or a tuple, list or dict of those, or a GLib.Variant'
                    % type(value).__name__)


def _dict_to_variant(value):
    if all(isinstance(key, str) for key in value):
        key_type = 's'
    elif all(isinstance(key, int) and not isinstance(key, bool) for key in value):
        key_type = 'x'
    else:
        raise TypeError('a dict needs keys that are all str or all int')
    return GLib.Variant('a{%sv}' % key_type,
                        {key: to_variant(item) for key, item in value.items()})


def from_variant(variant):
    """The Python value of a GLib.Variant: what GLib.Variant.unpack()
    returns, but 'ay' gives bytes and a nothing maybe gives None."""
    if variant is None:
        return None
    type_string = variant.get_type_string()
    if 'ay' not in type_string and 'v' not in type_string:
        return variant.unpack()      # fast: all in C, and no bytes inside
    if type_string == 'ay':
        return variant.get_data_as_bytes().get_data()
    if type_string == 'v':
        return from_variant(variant.get_variant())
    if type_string.startswith('m'):
        return from_variant(variant.get_maybe())
    children = [variant.get_child_value(i) for i in range(variant.n_children())]
    if type_string.startswith('a{'):
        return {from_variant(entry.get_child_value(0)): from_variant(entry.get_child_value(1))
                for entry in children}
    if type_string.startswith('a'):
        return [from_variant(child) for child in children]
    return tuple(from_variant(child) for child in children)


__all__ += ['to_variant', 'from_variant']


# Running handlers ------------------------------------------------------------
#
# The original ran receive handlers in background threads; here they run
# where the default GLib main context is dispatched.  A program that runs
# no GLib main loop (an asyncio bot, as in the original) gets one thread
# that does, started with the first handler.  Coroutine handlers run on
# one asyncio loop thread, in the order their messages came.

class _Runner:
    def __init__(self):
        self._lock = threading.Lock()
        self._dispatching = False
        self._loop = None

    def ensure_dispatch(self):
        context = GLib.MainContext.default()
        with self._lock:
            if self._dispatching or GLib.main_depth() > 0:
                return
            if not context.acquire():
                return          # another thread runs it
            context.release()
            self._dispatching = True
        thread = threading.Thread(target=GLib.MainLoop(context).run,
                                  name='Ly main context', daemon=True)
        thread.start()

    def _asyncio_loop(self):
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._loop.run_forever,
                                 name='Ly asyncio', daemon=True).start()
            return self._loop

    def run(self, handler, filter_func, value):
        """Calls handler(value) if filter_func(value) accepts it; either
        may be a coroutine function."""
        accepted = True if filter_func is None else filter_func(value)
        if inspect.isawaitable(accepted):
            self._submit(self._filtered(accepted, handler, value))
            return
        if not accepted:
            return
        result = handler(value)
        if inspect.isawaitable(result):
            self._submit(result)

    @staticmethod
    async def _filtered(accepted, handler, value):
        if await accepted:
            result = handler(value)
            if inspect.isawaitable(result):
                await result

    def _submit(self, awaitable):
        future = asyncio.run_coroutine_threadsafe(_awaited(awaitable), self._asyncio_loop())
        future.add_done_callback(_report_exception)


async def _awaited(awaitable):
    return await awaitable


def _report_exception(future):
    if not future.cancelled() and future.exception() is not None:
        error = future.exception()
        import traceback
        traceback.print_exception(type(error), error, error.__traceback__)


_runner = _Runner()


def dispatch_in_thread():
    """Runs the default GLib main context in a daemon thread, unless this
    thread is running it or another thread owns it.  For programs whose
    main loop is asyncio's: the hub's process events and the channels'
    signals need the GLib one.  on_receive() and on_subscriber_receive()
    call it themselves."""
    _runner.ensure_dispatch()


__all__.append('dispatch_in_thread')


# Channel ---------------------------------------------------------------------

class Channel(Ly.Channel):
    """A Ly.Channel that takes and gives Python values."""

    def _to_variant(self, value):
        message_type = self.get_message_type()
        return to_variant(value, message_type.dup_string() if message_type is not None else None)

    def send(self, value):
        """Queues value (a Python value or a GLib.Variant) and returns at once."""
        return Ly.Channel.send(self, self._to_variant(value))

    def send_async(self, value, *args, **kwargs):
        return Ly.Channel.send_async(self, self._to_variant(value), *args, **kwargs)

    def receive(self, cancellable=None, timeout=None):
        """The next message as a Python value; waits for it, at most timeout
        seconds when given (then GLib.Error TIMED_OUT)."""
        return from_variant(self.receive_variant(cancellable, timeout))

    def receive_variant(self, cancellable=None, timeout=None):
        """The next message as a GLib.Variant."""
        if timeout is None:
            return Ly.Channel.receive(self, cancellable)
        return Ly.Channel.receive_timeout(self, max(0, int(timeout * 1000)), cancellable)

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
            self.connect('received', lambda channel, message:
                         _runner.run(handler, filter_func, from_variant(message)))
            dispatch_in_thread()
            return handler
        return decorator


Channel = override(Channel)
__all__.append('Channel')


# Storage ---------------------------------------------------------------------

class Storage(Ly.Storage):
    """A Ly.Storage that takes and gives Python values; also a mapping."""

    def set(self, key, value):
        return Ly.Storage.set(self, key, to_variant(value))

    def set_async(self, key, value, *args, **kwargs):
        return Ly.Storage.set_async(self, key, to_variant(value), *args, **kwargs)

    def get(self, key, default=None):
        """The value of key, or default when there is none."""
        value = Ly.Storage.get(self, key)
        return default if value is None else from_variant(value)

    def get_variant(self, key):
        """The value of key as a GLib.Variant, or None."""
        return Ly.Storage.get(self, key)

    def delete(self, key, ignore_key_error=True):
        """Deletes key; KeyError when it does not exist and ignore_key_error
        is false."""
        if not ignore_key_error and not self.contains(key):
            raise KeyError(key)
        return Ly.Storage.delete(self, key)

    def get_all(self):
        """A dict of every key and its value."""
        return from_variant(Ly.Storage.get_all(self))

    def publish(self, topic, value):
        return Ly.Storage.publish(self, topic, to_variant(value))

    def on_subscriber_receive(self, topic):
        """A decorator: subscribes to topic and calls the function, sync or
        async, with each value published on it."""
        def decorator(handler):
            self.subscribe(topic)
            self.connect('published::' + topic, lambda storage, _topic, value:
                         _runner.run(handler, None, from_variant(value)))
            dispatch_in_thread()
            return handler
        return decorator

    def __getitem__(self, key):
        value = Ly.Storage.get(self, key)
        if value is None:
            raise KeyError(key)
        return from_variant(value)

    def __setitem__(self, key, value):
        self.set(key, value)

    def __delitem__(self, key):
        self.delete(key, ignore_key_error=False)

    def __contains__(self, key):
        return self.contains(key)


Storage = override(Storage)
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

    def __repr__(self):
        return '<Ly.%s>' % self._what


active_channel = _Lazy(Ly.active_channel, 'active_channel')
passive_channel = _Lazy(Ly.passive_channel, 'passive_channel')
shared_memory = _Lazy(Ly.Storage.get_default, 'shared_memory')
__all__ += ['active_channel', 'passive_channel', 'shared_memory']
