# lytap.py: runs a Python test file's test_* functions and prints TAP,
# as meson test reads it (protocol: 'tap').
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import sys
import traceback


def run(namespace):
    """Runs every test_* function of namespace (a module's globals()),
    in name order, and exits 1 if any failed."""
    tests = [value for name, value in sorted(namespace.items()) if name.startswith('test_')]
    print('1..%d' % len(tests))
    failed = False
    for number, test in enumerate(tests, 1):
        try:
            test()
            print('ok %d - %s' % (number, test.__name__))
        except Exception:
            failed = True
            print('not ok %d - %s' % (number, test.__name__))
            for line in traceback.format_exc().splitlines():
                print('# ' + line)
        sys.stdout.flush()
    sys.exit(1 if failed else 0)
