#!/usr/bin/python3
# storage_child.py: compare-and-set increments from a Python child, for the
# storage tests.  Usage: storage_child.py KEY N [WAIT_KEY]: once WAIT_KEY
# exists, when given.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os
import sys

import gi
gi.require_version('GLib', '2.0')
gi.require_version('Ly', '1')
from gi.repository import GLib, Ly  # noqa: E402

import time  # noqa: E402

key, n = sys.argv[1], int(sys.argv[2])
storage = Ly.Storage.get_default()
assert storage.is_proxy()
if len(sys.argv) > 3:
    deadline = time.monotonic() + 120
    while sys.argv[3] not in storage:
        assert time.monotonic() < deadline
        time.sleep(0.01)

retries = 0
for _ in range(n):
    while True:
        current = storage.get_variant(key)   # compare_and_set compares variants
        value = current.get_uint32() if current is not None else 0
        if storage.compare_and_set(key, current, GLib.Variant('u', value + 1)):
            break
        retries += 1

with open(os.environ['LY_TEST_OUTPUT'], 'a') as output:
    output.write('incremented %d times (%d retries)\n' % (n, retries))
