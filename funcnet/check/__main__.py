"""``python -m funcnet.check``: every rule of ``funcnet.layers.REGISTRY``, checked."""

import sys

from funcnet.check._registry import main

if __name__ == "__main__":
    sys.exit(main())
