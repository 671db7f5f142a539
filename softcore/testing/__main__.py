"""``python -m softcore.testing NAME``: as ``python -m softcore check NAME``."""

import sys

from softcore.testing import main

sys.exit(main())
