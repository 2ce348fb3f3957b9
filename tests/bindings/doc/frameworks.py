# frameworks.py: stand-ins for what the reference document's examples
# import from LiteyukiBot and NoneBot besides liteyuki.comm, doing what
# those frameworks do with the decorated functions.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import asyncio
import os
import threading
import time

import gi
gi.require_version('Ly', '1')
from gi.repository import Ly  # noqa: E402


class Logger:
    """liteyuki.log.logger: a timestamped line, to the test's file."""

    def info(self, message):
        line = '%s [INFO] %s' % (time.strftime('%Y-%m-%d %H:%M:%S'), message)
        with open(os.environ['LY_TEST_OUTPUT'], 'a') as output:
            output.write(line + '\n')


logger = Logger()


class Driver:
    """nonebot's driver: on_startup hooks run when the bot starts, a sync
    one in a worker thread (NoneBot's run_sync), then the asyncio loop
    runs until the process ends."""

    def __init__(self):
        self.startup = []

    def on_startup(self, function):
        self.startup.append(function)
        return function

    def run(self):
        async def main():
            for function in self.startup:
                if asyncio.iscoroutinefunction(function):
                    await function()
                else:
                    threading.Thread(target=function, daemon=True).start()
            await asyncio.Event().wait()
        asyncio.run(main())


_driver = Driver()


def get_driver():
    return _driver


class Bot:
    """LiteyukiBot: on_after_start hooks run once the bot (the hub) runs,
    in its asyncio loop; the bot dispatches GLib in a thread of its own,
    as an asyncio program that embeds the hub does."""

    def __init__(self):
        self.after_start = []

    def on_after_start(self, function):
        self.after_start.append(function)
        return function

    async def run(self, until):
        Ly.dispatch_in_thread()
        tasks = [asyncio.create_task(function()) for function in self.after_start]
        await until()
        for task in tasks:
            task.cancel()


_bot = Bot()


def get_bot():
    return _bot
