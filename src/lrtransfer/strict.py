"""The strict pydantic base of every component config, and the error every bad config value raises.

Every config in lrtransfer (model, data, optimizer, schedule, monitor, run settings, sweep spec)
derives from `Strict`: unknown keys are errors and instances are immutable, so a typo in a YAML
file fails loudly and a resolved config can be hashed. Numbers are strict about booleans: pydantic
would read ``optim.lr=true`` as 1.0 and ``run.steps=false`` as 0, so a ``true``/``false`` where a
number belongs is an error naming the field. Everything else keeps pydantic's usual conversions
(YAML lists into tuple fields, strings into paths, ``"1e-3"`` into a float). Kept apart from
`lrtransfer.config` so that component modules (`models`, `data`, `optim`, ...) can derive from it
without an import cycle.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field."""


class Strict(BaseModel):
    """Unknown keys forbidden, instances frozen, no booleans for numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_for_number(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        errors = [InitErrorDetails(type=PydanticCustomError("bool_number", "must be a number, not a boolean"),
                                   loc=loc, input=bad)
                  for name, field in cls.model_fields.items() if name in data
                  for loc, bad in bools_for_numbers(field.annotation, data[name], (name,))]
        if errors:  # raised as a ValidationError, so each error is located at its own field
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return data


def bools_for_numbers(annotation: Any, value: Any, loc: tuple = ()) -> list[tuple[tuple, bool]]:
    """``(location, value)`` of every bool in `value` that `annotation` would read as a number: the
    value itself, or items of a list or tuple (``loc + (1,)``). A union that admits ``bool`` takes
    booleans as they are."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return bools_for_numbers(args[0], value, loc)
    if origin in (Union, types.UnionType):
        found = [] if bool in args else (bools_for_numbers(a, value, loc) for a in args)
        return next((f for f in found if f), [])
    if annotation in (int, float):
        return [(loc, value)] if isinstance(value, bool) else []
    if origin in (list, tuple, Sequence) and isinstance(value, (list, tuple)) and args:
        items = args[:1] * len(value) if origin is not tuple or args[-1] is Ellipsis else args
        return [f for i, (a, v) in enumerate(zip(items, value)) for f in bools_for_numbers(a, v, (*loc, i))]
    return []
