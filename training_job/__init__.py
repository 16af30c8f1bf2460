"""training_job package."""

import visionops  # noqa: F401  (first: turns library telemetry off before MLflow is imported)
