"""``python -m visionops_console``: the console's command line (same as ``visionops console``)."""

import sys

from visionops_console.cli import main

if __name__ == "__main__":
    sys.exit(main())
