"""The parts of the training recipe that follow from the data rather than from the TrainingRun's fields.

ultralytics accumulates gradients over ``round(nbs / batch)`` batches before each optimizer step, with a
nominal batch ``nbs`` of 64. On a dataset of thousands of images that emulates a batch of 64; on a small one
(the demo's 60 images, a first VISION product with a few dozen labelled parts) it leaves an epoch one optimizer
step, and 30 epochs train for 30 steps: the model learns nothing. :func:`nominal_batch` keeps ultralytics'
64 wherever an epoch still has :data:`MIN_STEPS_PER_EPOCH` steps with it, and accumulates less (down to one
batch per step) where it would not. Measured in ``bench/bench_recipe.py``.
"""

from __future__ import annotations

import math

ULTRALYTICS_NOMINAL_BATCH = 64  # ultralytics' own default ``nbs``
MIN_STEPS_PER_EPOCH = 8


def nominal_batch(train_images: int, batch: int) -> int:
    """ultralytics' ``nbs`` for ``train_images`` images at ``batch``: a multiple of ``batch``, at most 64 (or the
    batch when it is larger), small enough that an epoch makes at least :data:`MIN_STEPS_PER_EPOCH` steps."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    batches_per_epoch = max(1, math.ceil(max(train_images, 0) / batch))
    wanted = max(1, round(ULTRALYTICS_NOMINAL_BATCH / batch))
    affordable = max(1, batches_per_epoch // MIN_STEPS_PER_EPOCH)
    return batch * min(wanted, affordable)
