#!/usr/bin/python3
# test-python-typing.py: mypy --strict accepts every Python example of
# README.md and of the reference's topic pages (docs/*.md) against the
# typing stubs (src/stubs, installed as gi-stubs), and rejects a wrong
# use, so the check cannot pass vacuously.
#
# Usage: test-python-typing.py STUBS_DIR MARKDOWN...
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os
import re
import subprocess
import sys
import tempfile

stubs, documents = sys.argv[1], sys.argv[2:]
examples = []
for document in documents:
    with open(document) as f:
        for number, block in enumerate(re.findall(r'```python\n(.*?)```', f.read(), re.S), 1):
            examples.append(('%s-example-%d' % (os.path.basename(document), number), block))


def mypy(directory, path):
    environment = dict(os.environ, MYPYPATH=os.pathsep.join([stubs, directory]))
    return subprocess.run([sys.executable, '-m', 'mypy', '--strict', '--no-incremental',
                           '--cache-dir', os.path.join(directory, 'cache'), path],
                          capture_output=True, text=True, env=environment)


tests = list(examples)
tests.append(('a-wrong-use-is-rejected', 'from gi.repository import Ly\n'
                                         'channel: int = Ly.Channel.new_pair("x")\n'))
print('1..%d' % len(tests))
failed = False
with tempfile.TemporaryDirectory() as directory:
    # the reference document's logger
    os.makedirs(os.path.join(directory, 'liteyuki'))
    with open(os.path.join(directory, 'liteyuki', '__init__.pyi'), 'w'):
        pass
    with open(os.path.join(directory, 'liteyuki', 'log.pyi'), 'w') as f:
        f.write('from typing import Any\nlogger: Any\n')
    for number, (name, code) in enumerate(tests, 1):
        path = os.path.join(directory, 'example_%d.py' % number)
        with open(path, 'w') as f:
            f.write(code)
        result = mypy(directory, path)
        ok = (result.returncode == 0) == (name != 'a-wrong-use-is-rejected')
        print('%s %d - %s' % ('ok' if ok else 'not ok', number, name))
        if not ok:
            failed = True
            for line in (result.stdout + result.stderr).splitlines():
                print('# ' + line)
sys.exit(1 if failed else 0)
