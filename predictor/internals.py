"""The private parts of uvicorn and KServe the predictor's limits rely on, checked before it serves.

:class:`predictor.transport.LimitedProtocol` extends uvicorn's ``HttpToolsProtocol`` (its parser callbacks and
per-connection state) and :class:`predictor.server.PredictorServer` overrides KServe's ``ModelServer._serve`` to
hand uvicorn that protocol. None of it is public API: a dependency bump could rename an attribute, and a limit
would then be off without a word (or fail on the first request). :func:`missing` lists what the installed versions
lack, read from their classes and the source of the methods that set per-connection state; the predictor's CLI
refuses to start with one line naming them (:func:`check`). The pins in pyproject.toml are the versions it was
written against.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable

# What LimitedProtocol overrides or calls on HttpToolsProtocol (methods), and the instance attributes it reads,
# which uvicorn sets in __init__ or connection_made.
PROTOCOL_METHODS = ("connection_made", "connection_lost", "data_received", "on_message_begin", "on_url",
                    "on_header", "on_headers_complete", "on_body", "on_message_complete", "send_400_response",
                    "timeout_keep_alive_handler", "on_response_complete")
PROTOCOL_STATE = ("loop", "transport", "flow", "server_state", "client", "cycle", "pipeline", "timeout_keep_alive",
                  "timeout_keep_alive_task")
# What it reads or sets on the request's RequestResponseCycle.
CYCLE_STATE = ("response_started", "response_complete", "disconnected", "message_event")
PINNED = "the versions pinned in pyproject.toml"


def _assigned(functions: Iterable[Callable[..., object]]) -> set[str]:
    """The ``self.<name>`` attributes the functions' source assigns."""
    names: set[str] = set()
    for function in functions:
        names |= set(re.findall(r"self\.(\w+)\s*(?::[^=\n]+)?=(?!=)", inspect.getsource(function)))
    return names


def missing() -> list[str]:
    """``module.Class.attribute`` of each private part the installed uvicorn or KServe lacks (empty: all there)."""
    import kserve
    from uvicorn.protocols.http import httptools_impl

    protocol, cycle = httptools_impl.HttpToolsProtocol, httptools_impl.RequestResponseCycle
    gone = [f"uvicorn HttpToolsProtocol.{name}" for name in PROTOCOL_METHODS if not callable(getattr(protocol, name,
                                                                                                      None))]
    state = _assigned([protocol.__init__, protocol.connection_made])
    gone += [f"uvicorn HttpToolsProtocol.{name}" for name in PROTOCOL_STATE if name not in state]
    cycle_state = _assigned([cycle.__init__])
    gone += [f"uvicorn RequestResponseCycle.{name}" for name in CYCLE_STATE if name not in cycle_state]
    serve = getattr(kserve.ModelServer, "_serve", None)
    if not inspect.iscoroutinefunction(serve):
        gone.append("kserve ModelServer._serve (a coroutine)")
    elif "_rest_server" not in _assigned([kserve.ModelServer.start, kserve.ModelServer.__init__]) and \
            "_rest_server" not in inspect.getsource(kserve.ModelServer):
        gone.append("kserve ModelServer._rest_server")
    return gone


def check() -> str | None:
    """One line saying what is missing and what to do, or None when every private part is there."""
    gone = missing()
    if not gone:
        return None
    return (f"the installed uvicorn/KServe lack {', '.join(gone)}, which the predictor's transport limits use; "
            f"install {PINNED} (uvicorn, kserve) or adapt predictor/transport.py and predictor/server.py")
