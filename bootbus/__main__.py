"""``python3 -m bootbus``: the daemon."""

import sys

from .daemon import main

sys.exit(main())
