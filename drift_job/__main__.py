"""``python -m drift_job``: the drift check Job's entry point."""

import sys

from drift_job.cli import main

sys.exit(main())
