"""The ``visionops`` command: a thin dispatcher to each component's own ``main(argv)``."""

from __future__ import annotations

import importlib
import sys

# subcommand -> (module, help). Imports are lazy so `visionops data` never loads torch.
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("visionops.data.cli", "prepare VISION data, generate a synthetic dataset, simulate drift"),
    "train": ("training_job.cli", "train YOLOv8n and log everything to MLflow (the training Job)"),
    "register": ("visionops.registry_cli", "register a run's model and apply the promotion gate"),
    "deploy": ("visionops.deploy_cli", "see and steer the production version on the cluster, and roll back"),
    "analyze": ("visionops.analysis_cli", "per-class AP50 of a training run and its hardest val images"),
    "drift": ("drift_job.cli", "compare a batch of images with the reference set (the drift Job)"),
    "serve": ("predictor.cli", "serve the model with the KServe ModelServer (V1 and V2)"),
    "demo": ("visionops.demo", "the whole loop locally: data, MLflow, train, promote, serve, drift"),
    "console": ("visionops_console.cli", "the web console: data, training, evaluation, analysis, deploy, drift"),
}


def usage() -> str:
    lines = ["usage: visionops <command> [options]", "", "commands:"]
    lines += [f"  {name:<9} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `visionops <command> --help` for the options of one command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"visionops: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
