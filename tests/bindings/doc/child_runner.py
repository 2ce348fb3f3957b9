# child_runner.py: the child process of test-python-doc.py: NoneBot loads
# the document's plugin, the storage example runs, and the bot starts.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import child_side  # noqa: F401
import storage_side
from frameworks import get_driver, logger

logger.info('Storage in the child: %s' % storage_side.value)
get_driver().run()
