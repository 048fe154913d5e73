"""``python -m gmnfx``: the same as the ``gmnfx`` command."""
import sys

from gmnfx.cli import main

if __name__ == "__main__":
    sys.exit(main())
