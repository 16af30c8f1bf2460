"""One configuration source: ``configs/*.yaml`` defaults, overridden by CR spec or flags."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR_ENV = "VISIONOPS_CONFIG_DIR"


def config_dir() -> Path:
    """Directory holding the ``*.yaml`` defaults (``$VISIONOPS_CONFIG_DIR`` or the repo's ``configs/``)."""
    env = os.environ.get(CONFIG_DIR_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "configs"


def load(name: str) -> dict[str, Any]:
    """Load ``configs/<name>.yaml`` as a dict; a clear error when it is missing or not a mapping."""
    path = config_dir() / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} not found (set {CONFIG_DIR_ENV} to its folder)")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping, got {type(data).__name__}")
    return data


def merged(defaults: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Deep-merge ``overrides`` onto ``defaults``; ``None`` values in overrides keep the default."""
    out = copy.deepcopy(defaults)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out
