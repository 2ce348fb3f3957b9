# asyncio_child.py: a child written like the reference document's NoneBot
# plugin: handlers registered at import time, before any loop runs, then
# asyncio.run(main()).  It reports to the hub, on its active channel,
# where each handler ran.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import asyncio
import os
import sys
import threading
import time

import gi
gi.require_version('Ly', '1')
from gi.repository.Ly import active_channel, passive_channel, shared_memory  # noqa: E402

program = {}        # the program's loop and its own asyncio objects, set in main()


def where():
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    return {'main_thread': threading.current_thread() is threading.main_thread(),
            'program_loop': running is not None and running is program.get('loop'),
            'threads': threading.active_count()}


@passive_channel.on_receive(filter_func=lambda data: isinstance(data, str))
async def on_passive_text(data):
    await program['gate'].wait()          # the program's own asyncio.Event
    active_channel.send({'handler': 'async', 'data': data, **where()})


@passive_channel.on_receive(filter_func=lambda data: isinstance(data, int))
def on_passive_number(data):
    active_channel.send({'handler': 'sync', 'data': data, **where()})


@shared_memory.on_subscriber_receive('news')
async def on_news(data):
    active_channel.send({'handler': 'news', 'data': data, **where()})


async def main():
    program['loop'] = asyncio.get_running_loop()
    program['gate'] = asyncio.Event()
    program['gate'].set()
    active_channel.send('ready')
    try:
        while True:
            command = await active_channel.receive_async()
            if command == 'storage':
                await shared_memory.set_async('child.value', {'n': 1})
                swapped = await shared_memory.compare_and_set_async('child.counter', None, 1)
                again = await shared_memory.compare_and_set_async('child.counter', None, 2)
                hub_value = await shared_memory.get_async('hub.value')
                await shared_memory.publish_async('news', 'from the child')
                active_channel.send({'handler': 'storage', 'data': [swapped, again, hub_value], **where()})
            elif command == 'cancel':
                # an awaitable cancelled before a message comes takes none
                waiting = asyncio.ensure_future(active_channel.receive_async())
                await asyncio.sleep(0.05)
                waiting.cancel()
                try:
                    await waiting
                except asyncio.CancelledError:
                    pass
                never = active_channel.receive_async()   # never awaited: takes nothing
                del never
                active_channel.send('cancelled')
                after = await active_channel.receive_async()
                active_channel.send({'handler': 'after-cancel', 'data': after, **where()})
            elif command == 'registry':
                from gi.repository import Ly
                name = Ly.get_process_name()
                mine, _theirs = Ly.Channel.new_pair('mine')
                Ly.set_channel('mine', mine)
                found = [Ly.get_channel(name + '-active') == active_channel(),
                         Ly.get_channel(name + '-passive') == passive_channel(),
                         Ly.get_channel('mine') == mine]
                active_channel.send({'handler': 'registry', 'data': found + [sorted(Ly.list_channels())],
                                     **where()})
            elif command == 'flush':
                await active_channel.send_async('sent-async')
                await active_channel.flush_async()
    finally:
        # a polite stop ends the program the asyncio way: this runs
        with open(os.environ['LY_TEST_OUTPUT'], 'a') as output:
            output.write('finally ran at %.6f\n' % time.monotonic())


if __name__ == '__main__':
    import warnings
    warnings.simplefilter('ignore', RuntimeWarning)   # the coroutine never awaited, on purpose
    asyncio.run(main())
    sys.exit(3)       # not reached on a polite stop: SystemExit(0) comes out of asyncio.run()
