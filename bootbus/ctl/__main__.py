"""``python3 -m bootbus.ctl``: bootbusctl."""

import sys

from .cli import main

sys.exit(main())
