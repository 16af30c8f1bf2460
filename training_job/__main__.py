"""``python -m training_job``: the training Job's entrypoint."""

import sys

from training_job.cli import main

sys.exit(main())
