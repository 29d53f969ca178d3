"""``python -m alexnet_lib ...``: see alexnet_lib/cli.py."""
import sys

from alexnet_lib.cli import main

if __name__ == "__main__":
    sys.exit(main())
