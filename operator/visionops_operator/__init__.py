"""VisionOps operator (control plane): reconciles TrainingRun, DriftCheck and ModelDeployment resources with
kopf.

Imported as ``visionops_operator`` (the folder ``operator/`` never shadows the standard library).
"""

import visionops  # noqa: F401  (first: turns library telemetry off before MLflow is imported)
from visionops import contract

GROUP, VERSION = contract.API_GROUP, contract.API_VERSION  # one home: visionops.contract
