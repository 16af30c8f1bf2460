"""``python -m visionops_operator``: parse the settings once, then run kopf with our handlers."""

from __future__ import annotations

import os
import sys

import kopf

from . import settings


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

    kopf.run(standalone=True, clusterwide=config.all_namespaces, namespaces=config.namespaces,
             liveness_endpoint=config.liveness, memo=kopf.Memo(settings=config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
