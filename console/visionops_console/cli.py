"""``visionops console`` / ``python -m visionops_console``: parse the settings once, log them, serve with uvicorn."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence

from visionops_console import settings as settings_module


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the console until SIGTERM/SIGINT; 2 on bad flags or environment."""
    try:
        config = settings_module.parse(argv, os.environ)
    except SystemExit as exc:
        return int(exc.code or 0)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import uvicorn

    from visionops_console.app import create_app

    app = create_app(config)
    logging.getLogger("visionops.console").info("settings %s", json.dumps(config.public(), sort_keys=True))
    host = "localhost" if config.host in ("127.0.0.1", "0.0.0.0", "::") else config.host
    print(f"VisionOps Console: http://{host}:{config.port}/ (namespace {app.state.console.cluster.namespace}"
          f"{', read-only' if config.read_only else ''})", file=sys.stderr, flush=True)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", access_log=False,
                proxy_headers=False, server_header=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
