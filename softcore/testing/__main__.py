"""``python -m softcore.testing NAME``: the same as ``python -m softcore check NAME``."""

import sys

from softcore.testing import main

sys.exit(main())
