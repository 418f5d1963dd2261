import sys

from devtools.operator_console.cli import main

sys.exit(main())
