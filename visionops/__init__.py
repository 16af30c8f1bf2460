"""VisionOps: shared library of the data plane (data, registry, config) for defect detection."""

__version__ = "0.1.0"
