"""``python3 -m bootbus.ctl``: bootbusctl."""

import sys

from . import main

sys.exit(main())
