"""drift_job package."""
