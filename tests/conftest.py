"""Shared fixtures: real services started once per test session (see tests/fixtures/)."""

from pathlib import Path

_FIXTURES = Path(__file__).parent / "fixtures"

# Every module in tests/fixtures/ is a fixture plugin.
pytest_plugins = sorted(
    f"fixtures.{path.stem}" for path in _FIXTURES.glob("*.py") if path.stem != "__init__"
)
