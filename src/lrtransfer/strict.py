"""The strict pydantic base of every component config, and the error every bad config value raises.

Every config in lrtransfer (model, data, optimizer, schedule, monitor, run settings, sweep spec)
derives from `Strict`: unknown keys are errors and instances are immutable, so a typo in a YAML
file fails loudly and a resolved config can be hashed. Kept apart from `lrtransfer.config` so that
component modules (`models`, `data`, `optim`, ...) can derive from it without an import cycle.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field."""


class Strict(BaseModel):
    """Unknown keys forbidden, instances frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
