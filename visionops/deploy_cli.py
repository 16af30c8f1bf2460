"""``visionops deploy``: see and steer what is in production on the cluster, through its ModelDeployment.

    visionops deploy status              the ModelDeployment(s): desired, serving, previous version, phase
    visionops deploy set 3 [--wait]      put version 3 into production (the operator moves the alias and rolls out)
    visionops deploy rollback [--wait]   back to the version that served before
    visionops deploy history             what served when, who or what moved it

It writes only ``spec.version`` (and the change cause) of the ModelDeployment, as field manager
``visionops-cli``; the operator does the rest (docs/deployment.md). ``--wait`` returns once the predictor
serves the version (exit 0) or the rollout failed (exit 1), and prints how long it took.
"""

from __future__ import annotations

import argparse
import getpass
import os
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any

from visionops import production

FIELD_MANAGER = "visionops-cli"


class DeployError(RuntimeError):
    """What the user asked cannot be done (one line for stderr)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visionops deploy",
                                     description="See and steer the production model version on the cluster.")
    parser.add_argument("-n", "--namespace", default=None,
                        help="namespace of the ModelDeployment (default: the kubeconfig context's, else default)")
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    parser.add_argument("-d", "--deployment", default=None,
                        help="ModelDeployment name (default: the only one in the namespace)")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("status", help="desired, serving and previous version, phase and message")
    sub.add_parser("history", help="what was put into production when, and by whom")
    for name, text in (("set", "put a version into production"), ("rollback", "back to the previous version")):
        action = sub.add_parser(name, help=text)
        if name == "set":
            action.add_argument("version", help="registered model version number")
        action.add_argument("--cause", default="", help="why (kept in the history; default: who and where)")
        action.add_argument("--wait", action="store_true", help="wait until it serves or the rollout fails")
        action.add_argument("--timeout", type=float, default=600.0, help="seconds --wait waits (default: 600)")
    return parser


def _api(kubeconfig: str | None) -> tuple[Any, str]:
    """(CustomObjectsApi, the context's namespace) from the kubeconfig; in a pod, its ServiceAccount."""
    import kubernetes

    try:
        kubernetes.config.load_kube_config(config_file=kubeconfig or os.environ.get("KUBECONFIG"))
        _, context = kubernetes.config.list_kube_config_contexts(config_file=kubeconfig or os.environ.get("KUBECONFIG"))
        namespace = (context.get("context") or {}).get("namespace") or "default"
    except (kubernetes.config.ConfigException, FileNotFoundError, TypeError) as exc:
        try:
            kubernetes.config.load_incluster_config()
        except kubernetes.config.ConfigException:
            raise DeployError(f"no Kubernetes cluster configured ({exc}); set KUBECONFIG or --kubeconfig") from exc
        namespace = "default"
    return kubernetes.client.CustomObjectsApi(), namespace


def _call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    from kubernetes.client.rest import ApiException
    from urllib3.exceptions import HTTPError

    try:
        return fn(*args, **kwargs)
    except ApiException as exc:
        raise DeployError(f"{what}: the API server answered {exc.status} {exc.reason}") from exc
    except HTTPError as exc:
        raise DeployError(f"{what}: cannot reach the API server ({type(exc).__name__})") from exc


def find(api: Any, namespace: str, name: str | None) -> dict[str, Any]:
    """The ModelDeployment ``name``, or the only one in ``namespace``."""
    args = (production.GROUP, production.VERSION, namespace, production.PLURAL)
    if name:
        return _call(f"ModelDeployment {namespace}/{name}", api.get_namespaced_custom_object, *args, name)
    items = _call(f"ModelDeployments in {namespace}", api.list_namespaced_custom_object, *args)["items"]
    if len(items) != 1:
        names = ", ".join(i["metadata"]["name"] for i in items) or "none"
        raise DeployError(f"{len(items)} ModelDeployments in namespace {namespace} ({names}); name one with -d")
    return items[0]


def describe(md: dict[str, Any]) -> str:
    st, spec = md.get("status") or {}, md.get("spec") or {}
    rollout = st.get("rollout") or {}
    lines = [f"ModelDeployment {md['metadata']['namespace']}/{md['metadata']['name']}: "
             f"{(spec.get('model') or {}).get('name')} on InferenceService {spec.get('inferenceService')}",
             f"  phase     {st.get('phase', '-')}",
             f"  version   {spec.get('version') or '-'} (serving {st.get('servingVersion') or '-'}, "
             f"previous {st.get('previousVersion') or '-'})"]
    if rollout:
        lines.append(f"  rollout   version {rollout.get('version')}: {rollout.get('outcome')}"
                     + (f" in {rollout['seconds']} s" if "seconds" in rollout else ""))
    if st.get("message"):
        lines.append(f"  message   {st['message']}")
    return "\n".join(lines)


def history_table(md: dict[str, Any]) -> str:
    rows = [("TIME", "VERSION", "MOVED BY", "OUTCOME", "CAUSE")]
    rows += [(h.get("time", ""), h.get("version", ""), h.get("movedBy", ""), h.get("outcome", ""), h.get("cause", ""))
             for h in (md.get("status") or {}).get("history") or []]
    widths = [max(len(str(r[i])) for r in rows) for i in range(4)]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + str(r[4])
                     for r in rows)


def request(api: Any, md: dict[str, Any], version: str, cause: str) -> dict[str, Any]:
    meta = md["metadata"]
    patch = production.set_version_patch(version, cause or f"{getpass.getuser()}@{socket.gethostname()} "
                                                           f"with visionops deploy")
    return _call(f"patching ModelDeployment {meta['name']}", api.patch_namespaced_custom_object,
                 production.GROUP, production.VERSION, meta["namespace"], production.PLURAL, meta["name"], patch,
                 field_manager=FIELD_MANAGER)


def wait(api: Any, md: dict[str, Any], version: str, timeout: float, started: float) -> int:
    """Until the predictor serves ``version`` (0) or its rollout failed or time ran out (1)."""
    meta, last = md["metadata"], ""
    while True:
        md = find(api, meta["namespace"], meta["name"])
        st = md.get("status") or {}
        seen = md["metadata"].get("generation") == st.get("observedGeneration")
        rollout = st.get("rollout") or {}
        if seen and st.get("servingVersion") == version and st.get("phase") == "Serving":
            print(f"version {version} serves ({time.monotonic() - started:.1f} s after the request)")
            return 0
        failed = rollout.get("version") == version and rollout.get("outcome") == "Failed"
        went_back = st.get("phase") == production.ROLLOUT_FAILED and (md.get("spec") or {}).get("version") != version
        if seen and (failed or went_back):
            print(f"visionops deploy: {st.get('message') or 'the rollout failed'}", file=sys.stderr)
            return 1
        if st.get("message") and st["message"] != last:
            last = st["message"]
            print(f"  {last}", file=sys.stderr)
        if time.monotonic() - started > timeout:
            print(f"visionops deploy: version {version} does not serve after {timeout:g} s: {last}", file=sys.stderr)
            return 1
        time.sleep(1.0)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        api, context_namespace = _api(args.kubeconfig)
        md = find(api, args.namespace or context_namespace, args.deployment)
        if args.action == "status":
            print(describe(md))
            return 0
        if args.action == "history":
            print(history_table(md))
            return 0
        version = production.check_version(args.version) if args.action == "set" else \
            production.rollback_target(md.get("status") or {})
        started = time.monotonic()
        request(api, md, version, args.cause)
        print(f"ModelDeployment {md['metadata']['name']}: version {version} requested")
        return wait(api, md, version, args.timeout, started) if args.wait else 0
    except (DeployError, production.ProductionError) as exc:
        print(f"visionops deploy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
