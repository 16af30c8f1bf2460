"""The console's steps, one module each, beside its templates: its handlers ``(console, request) -> Response``, the
view models they build and the ``<step>.html`` they render. :mod:`visionops_console.app`'s route table is the index.

1 :mod:`.data` and 2 the data card (the dataset volume), 3 :mod:`.training` (TrainingRuns), 4 :mod:`.evaluation`
and 5 :mod:`.analysis` (MLflow), 6 :mod:`.deploy` (the registry, ModelDeployments, the predictor) and
:mod:`.drift` (DriftChecks).
"""
