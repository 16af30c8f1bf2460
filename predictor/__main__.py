"""``python -m predictor``: the KServe model server of the defect detector."""

import sys

from predictor.cli import main

if __name__ == "__main__":
    sys.exit(main())
