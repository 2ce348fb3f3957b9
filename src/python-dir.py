# python-dir.py PREFIX: the directory of this Python's path that is in
# PREFIX, where modules installed there are found; empty if none is.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import sys

lib = sys.argv[1].rstrip('/') + '/lib/'
print(next((path for path in sys.path
            if path.startswith(lib) and path.endswith('-packages')), ''))
