"""Shared fixtures: real services started once per test session."""

pytest_plugins = [
    "fixtures.mlflow_server",
    "fixtures.datasets",
    "fixtures.cluster",
]
