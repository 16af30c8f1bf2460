"""``python -m visionops_operator``: parse the settings once, then run kopf with our handlers."""

from __future__ import annotations

import os
import secrets
import sys
from typing import Any

import kopf

from . import settings


def peering(config: settings.OperatorSettings) -> dict[str, Any]:
    """kopf's peering arguments: standalone for one replica; else the shared peering object and a random priority,
    so that exactly one replica (the highest) acts and the others take over when it goes (kopf pauses replicas of
    equal priority, hence random over 2**31)."""
    if not config.peering:
        return {"standalone": True}
    return {"peering_name": config.peering, "priority": secrets.randbelow(2**31 - 1) + 1}


def main(argv: list[str] | None = None) -> int:
    """Run the operator until SIGTERM/SIGINT; 2 on bad flags or environment."""
    try:
        config = settings.parse(argv, os.environ)
    except SystemExit as exc:
        return int(exc.code or 0)
    if not config.all_namespaces and not config.namespaces:
        print("visionops-operator: give --namespace NS (repeatable) or --all-namespaces", file=sys.stderr)
        return 2
    kopf.configure(verbose=config.verbose)
    from . import handlers  # noqa: F401  (importing registers the handlers)

    kopf.run(**peering(config), clusterwide=config.all_namespaces, namespaces=config.namespaces,
             liveness_endpoint=config.liveness, memo=kopf.Memo(settings=config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
