"""``python -m visionops_operator``: run the operator (``kopf run`` with our handlers)."""

from __future__ import annotations

import argparse
import os
import sys

import kopf
import kopf.cli  # `import kopf` alone does not load the command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="visionops-operator", description=__doc__)
    parser.add_argument("-n", "--namespace", action="append", default=None,
                        help="namespace to watch (repeatable; env VISIONOPS_WATCH_NAMESPACES, comma-separated)")
    parser.add_argument("-A", "--all-namespaces", action="store_true",
                        default=os.environ.get("VISIONOPS_ALL_NAMESPACES", "").lower() in {"1", "true"},
                        help="watch the whole cluster (env VISIONOPS_ALL_NAMESPACES; default: off)")
    parser.add_argument("--liveness", default=os.environ.get("VISIONOPS_LIVENESS", "http://0.0.0.0:8080/healthz"),
                        help="liveness endpoint (env VISIONOPS_LIVENESS; default %(default)s)")
    parser.add_argument("--verbose", action="store_true", help="verbose kopf logs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    namespaces = args.namespace or [n for n in os.environ.get("VISIONOPS_WATCH_NAMESPACES", "").split(",") if n]
    if not args.all_namespaces and not namespaces:
        print("visionops-operator: give --namespace NS (repeatable) or --all-namespaces", file=sys.stderr)
        return 2
    kopf_args = ["run", "--standalone", "-m", "visionops_operator.handlers", f"--liveness={args.liveness}"]
    kopf_args += ["-A"] if args.all_namespaces else [f"--namespace={ns}" for ns in namespaces]
    if args.verbose:
        kopf_args.append("--verbose")
    return kopf.cli.main(args=kopf_args, standalone_mode=False) or 0


if __name__ == "__main__":
    sys.exit(main())
