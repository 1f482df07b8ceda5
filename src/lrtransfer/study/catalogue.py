"""The built-in studies: the sweep specs shipped under ``lrtransfer/presets/sweeps/`` (``lrtransfer demo``,
``lrtransfer sweep NAME``)."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml


def study_names() -> list[str]:
    """Built-in sweep specs (`lrtransfer demo`, `lrtransfer sweep NAME`)."""
    folder = resources.files("lrtransfer") / "presets" / "sweeps"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def study_spec(name: str) -> dict[str, Any]:
    """The raw dict of a built-in sweep spec."""
    if name not in study_names():
        raise ValueError(f"study: {name!r} is not one of {'|'.join(study_names())}")
    return yaml.safe_load((resources.files("lrtransfer") / "presets" / "sweeps" / f"{name}.yaml").read_text())
