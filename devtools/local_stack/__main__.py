"""``python -m devtools.local_stack`` (what ``make run`` runs)."""

import logging
import os
import sys

from devtools.local_stack.cli import main

exit_code = main()
# Everything is stopped, closed and flushed by now. Skip the interpreter's teardown
# of moto's object graph: it takes seconds, and Ctrl-C should return at once.
logging.shutdown()
sys.stdout.flush()
sys.stderr.flush()
os._exit(exit_code)
