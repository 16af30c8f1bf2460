"""VisionOps Console: the six-step web UI (data, data card, training, evaluation, analysis, deploy) and a drift
page, over the custom resources (Kubernetes API) and MLflow.

Imported as ``visionops_console``. It reads the shared library (:mod:`visionops`) and never the operator, the
Jobs or the predictor: it meets them where users do, in custom resources, Events, pod logs and MLflow.
"""

import visionops  # noqa: F401  (first: turns library telemetry off before MLflow is imported)
from visionops import contract

GROUP, VERSION = contract.API_GROUP, contract.API_VERSION  # one home: visionops.contract
