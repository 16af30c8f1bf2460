"""Shared fixtures: real services started once per test session (see tests/fixtures/)."""

from pathlib import Path

_FIXTURES = Path(__file__).parent / "fixtures"

# Every module in tests/fixtures/ is a fixture plugin.
pytest_plugins = sorted(
    f"fixtures.{path.stem}" for path in _FIXTURES.glob("*.py") if path.stem != "__init__"
)


def pytest_collection_modifyitems(items: list) -> None:
    """The end-to-end tests run last: their kind cluster (session-scoped, one for all of them) is made in the
    background meanwhile (``fixtures.e2e.BackgroundUp``; ``VISIONOPS_KIND_EARLY=0``: only when they start), and
    deleted after them."""
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)
