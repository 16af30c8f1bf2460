"""VisionOps: shared library of the data plane (data, registry, config) for defect detection."""

from visionops import telemetry as _telemetry

__version__ = "0.1.0"

# Before anything imports MLflow, Evidently or ultralytics: they phone home unless told not to.
_telemetry.disable()
