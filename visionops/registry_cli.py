"""``visionops register``: register a training run's model and apply the promotion gate.

For users without the operator (and the demo). ``--promote auto`` moves the production alias when
the gate passes; ``--promote manual`` only registers (staging) and prints the gate's verdict;
``--promote-version N`` moves production to an existing version by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from visionops import config


def build_parser() -> argparse.ArgumentParser:
    training = config.load("training")
    parser = argparse.ArgumentParser(
        prog="visionops register", description="Register a training run's model/ and apply the promotion gate."
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--run-id", help="MLflow run id of a finished training run")
    target.add_argument("--promote-version", metavar="N", help="move production to version N by hand")
    parser.add_argument(
        "--name", default=training["registered_model_name"],
        help="registered model name (default: %(default)s, configs/training.yaml)",
    )
    parser.add_argument(
        "--threshold", type=float, default=None,
        help="minimum map50 in [0, 1] (default: promotion.map50_threshold in configs/model.yaml)",
    )
    parser.add_argument(
        "--max-regression", type=float, default=None,
        help="max AP50 points any shared class may lose (default: configs/model.yaml)",
    )
    parser.add_argument(
        "--promote", choices=("auto", "manual"), default="auto",
        help="auto: move production when the gate passes; manual: register only (default: %(default)s)",
    )
    parser.add_argument(
        "--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"),
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI)",
    )
    parser.add_argument("--json", action="store_true", help="print the outcome as one JSON object")
    return parser


def run(args: argparse.Namespace) -> dict:
    """Do what the parsed flags ask; return the outcome as a dict."""
    from mlflow.tracking import MlflowClient

    from visionops import registry

    client = MlflowClient(tracking_uri=args.tracking_uri)
    if args.promote_version:
        registry.promote(client, args.name, args.promote_version)
        return {"name": args.name, "version": str(args.promote_version), "promoted": True,
                "reason": "promoted manually"}
    version = registry.register_version(client, args.name, args.run_id)
    outcome = {"name": args.name, "version": version.version, "run_id": args.run_id, "source": version.source}
    if args.promote == "auto":
        decision = registry.evaluate_and_promote(client, args.name, version.version, args.threshold,
                                                 args.max_regression)
    else:
        decision = registry.evaluate(client, args.name, version.version, args.threshold, args.max_regression)
    outcome.update(promoted=decision.promote and args.promote == "auto", gate=decision.as_dict())
    return outcome


def describe(outcome: dict, mode: str) -> str:
    """Human lines for an outcome of :func:`run`."""
    if "gate" not in outcome:
        return f"{outcome['name']} version {outcome['version']} -> production (promoted manually)"
    gate = outcome["gate"]
    lines = [f"registered {outcome['name']} version {outcome['version']} from run {outcome['run_id']} (staging)",
             f"gate: {'PASS' if gate['promote'] else 'REJECT'} - {gate['reason']}"]
    if outcome["promoted"]:
        lines.append(f"production -> version {outcome['version']}")
    elif mode == "manual":
        lines.append(f"production unchanged (--promote manual); to promote: visionops register "
                     f"--name {outcome['name']} --promote-version {outcome['version']}")
    else:
        lines.append("production unchanged")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.tracking_uri:
        print("error: no MLflow tracking URI: pass --tracking-uri or set MLFLOW_TRACKING_URI", file=sys.stderr)
        return 2
    try:
        outcome = run(args)
    except Exception as error:  # one clear line for the user, not a traceback
        print(f"error: {error}".splitlines()[0], file=sys.stderr)
        return 1
    print(json.dumps(outcome, sort_keys=True) if args.json else describe(outcome, args.promote))
    return 0


if __name__ == "__main__":
    sys.exit(main())
