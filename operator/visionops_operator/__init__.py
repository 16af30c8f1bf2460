"""VisionOps operator (control plane): reconciles TrainingRun and DriftCheck resources with kopf.

Imported as ``visionops_operator`` (the folder ``operator/`` never shadows the standard library).
"""

GROUP = "visionops.io"
VERSION = "v1alpha1"
