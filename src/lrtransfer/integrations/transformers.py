"""Hugging Face transformers: width-scaled param groups and alignment records for any ``PreTrainedModel``.

``pip install -e ".[hf]"``. Three pieces, all on models built from a config (nothing is downloaded):

* `param_groups(model, base_hidden_size, lr=..., weight_decay=..., ...)`: `lrtransfer.param_groups`
  with the base model built from ``model.config`` at ``base_hidden_size`` on the meta device
  (`base_config` says how the other sizes follow). Tied embeddings (GPT-2's ``wte`` = ``lm_head``)
  are one tensor with the embedding's ``input`` role (docs/scaling.md).
* `AlignmentCallback`: a ``TrainerCallback`` that wraps every ``every``-th optimizer step in an
  `lrtransfer.AlignmentMonitor` (Eq 2, 4), streams the records to ``alignment.jsonl`` in the run
  folder and, given ``log_to=trainer``, sends per-role means to the Trainer's loggers.
* ``hf_objective.causal_lm``: a ready study objective (`lrtransfer.Trial`) that builds a Llama or GPT-2 from a
  config at the trial's width and trains it on the built-in byte-level text
  (`lrtransfer.integrations.hf_objective`, which builds on this module; ``examples/hf_llama_study.yaml``).

A pitfall measured with transformers 5.23: ``GPT2LMHeadModel`` has ``loss_type = None`` (its class
name does not say "ForCausalLM"), so the ``Trainer`` divides the summed loss by all T labels rather
than the T-1 shifted ones and trains on, and logs, (T-1)/T times the mean cross-entropy; set
``model.loss_type = "ForCausalLM"`` first. ``LlamaForCausalLM`` is not affected.

>>> model = LlamaForCausalLM(config)
>>> opt = torch.optim.AdamW(param_groups(model, base_hidden_size=256, lr=8e-3, weight_decay=0.1))
>>> trainer = Trainer(model, args, train_dataset=data, optimizers=(opt, None))
>>> trainer.add_callback(AlignmentCallback(every=10, log_to=trainer))
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

try:
    import transformers
except ImportError as error:  # one clear line instead of a traceback deep inside an import
    raise ImportError("lrtransfer.integrations.transformers needs transformers: pip install -e '.[hf]'") from error

from lrtransfer import scaling
from lrtransfer.monitor import METRICS, AlignmentMonitor, check_arguments
from lrtransfer.records.runlog import truncate_from

ALIGNMENT_FILE = "alignment.jsonl"
# Config fields that grow in proportion to hidden_size (others, e.g. vocab and context, stay fixed).
# Scaling the number of heads keeps head_dim fixed: n_heads = hidden / head_dim, as in the paper
# (Appendix G.3) and the built-in llama. GPT-2's n_inner = None means 4·n_embd, which follows by itself.
PROPORTIONAL = ("intermediate_size", "n_inner", "num_attention_heads", "num_key_value_heads")


def base_config(config: transformers.PretrainedConfig, hidden_size: int) -> transformers.PretrainedConfig:
    """A copy of ``config`` at ``hidden_size``, each field of `PROPORTIONAL` scaled by the same ratio.

    An explicit ``head_dim`` (Llama) is kept, so attention widens by more heads of the same size.
    A size that would not be a whole number raises, naming ``base_hidden_size``.
    """
    if not isinstance(getattr(config, "hidden_size", None), int):
        raise ValueError(f"model.config: {type(config).__name__} has no integer hidden_size; build the base "
                         "model yourself and call lrtransfer.param_groups(model, base_model)")
    ratio = Fraction(hidden_size, config.hidden_size)
    scaled = copy.deepcopy(config)
    for field in ("hidden_size", *PROPORTIONAL):
        value = getattr(config, field, None)
        if value is None:
            continue
        if (value * ratio).denominator != 1:
            raise ValueError(f"base_hidden_size: {hidden_size} would give {field} = {value}·{ratio} = "
                             f"{float(value * ratio):g}, not a whole number")
        setattr(scaled, field, int(value * ratio))
    return scaled


def base_model(model: transformers.PreTrainedModel, hidden_size: int) -> transformers.PreTrainedModel:
    """``model``'s class built from `base_config` on the meta device: shapes only, no memory, no RNG draws."""
    config = base_config(model.config, hidden_size)
    with torch.device("meta"):
        return type(model)(config)


def reference(model: transformers.PreTrainedModel, base_hidden_size: int) -> dict[str, nn.Module]:
    """``base_model`` (and, at the base width itself, ``delta_model`` at twice it) for `lrtransfer.roles`."""
    if not isinstance(model, transformers.PreTrainedModel):
        raise TypeError(f"model: expected a transformers PreTrainedModel, got {type(model).__name__}")
    if isinstance(base_hidden_size, bool) or not isinstance(base_hidden_size, int) or base_hidden_size < 1:
        raise ValueError(f"base_hidden_size: must be an int >= 1, got {base_hidden_size!r}")
    hidden = getattr(model.config, "hidden_size", None)
    if isinstance(hidden, int) and base_hidden_size > hidden:
        raise ValueError(f"base_hidden_size: {base_hidden_size} is larger than the model's hidden_size {hidden}")
    ref = {"base_model": base_model(model, base_hidden_size)}
    if base_hidden_size == hidden:  # nothing differs from the base: a wider twin shows what scales
        ref["delta_model"] = base_model(model, 2 * base_hidden_size)
    return ref


def param_groups(model: transformers.PreTrainedModel, base_hidden_size: int, **rules: Any) -> list[dict[str, Any]]:
    """`lrtransfer.param_groups` (Eq 6-8) of a ``PreTrainedModel`` against its base width.

    ``rules``: ``lr``, ``weight_decay``, ``lr_scaling``, ``wd_scaling``, ``fixed_lr``, ``no_decay``,
    ``roles`` as in `lrtransfer.param_groups`. At ``base_hidden_size == hidden_size`` every m is 1.
    """
    return scaling.param_groups(model, **reference(model, base_hidden_size), **rules)


def parameter_roles(model: transformers.PreTrainedModel, base_hidden_size: int,
                    roles: Mapping[str, str] | None = None) -> dict[str, scaling.ParamInfo]:
    """`lrtransfer.parameter_roles` of a ``PreTrainedModel`` against its base width."""
    return scaling.parameter_roles(model, **reference(model, base_hidden_size), roles=roles)


class AlignmentCallback(transformers.TrainerCallback):
    """Alignment records (Eq 2, 4) of every ``every``-th ``Trainer`` step; ΔW is the whole optimizer step.

    The monitor opens at ``on_step_begin`` (W and, from the first micro-batch's forward, X) and
    closes at ``on_optimizer_step`` (ΔW = what ``optimizer.step()`` did, gradient accumulation
    included). ``step`` in the records is the Trainer's ``global_step`` after the update (1-based,
    the step of its logs and checkpoints); steps that are multiples of ``every`` are measured.

    Args:
        every, sample, layers, batch_dim: as in `lrtransfer.AlignmentMonitor`.
        folder: where ``alignment.jsonl`` goes (default: ``args.output_dir``). A run resumed at
            step k drops the records after k first, as a fresh run (k = 0) drops them all.
        roles: parameter name -> role; default: the ``role`` of the optimizer's groups (built by
            `param_groups`), else ``"unknown"``.
        log_to: a ``Trainer`` whose loggers (``report_to``) get, after each measured step, the mean
            over layers of each metric per role as ``alignment/<role>/<metric>`` (``trainer.log``).
    """

    def __init__(self, every: int = 10, *, sample: float = 1 / 64, layers: Sequence[str] | str | None = None,
                 batch_dim: int = 0, folder: str | Path | None = None, roles: Mapping[str, str] | None = None,
                 log_to: transformers.Trainer | None = None):
        check_arguments(every, sample, batch_dim)
        if log_to is not None and not isinstance(log_to, transformers.Trainer):
            raise TypeError(f"log_to: expected a transformers Trainer, got {type(log_to).__name__}")
        self.every, self.sample, self.layers, self.batch_dim = every, sample, layers, batch_dim
        self.folder, self.roles, self.log_to = folder, roles, log_to
        self.monitor: AlignmentMonitor | None = None
        self._open: contextlib.ExitStack | None = None
        self._step = 0

    @property
    def path(self) -> Path | None:
        """The records file, once training has begun."""
        return None if self.monitor is None else self.monitor.path

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        path = Path(self.folder if self.folder is not None else args.output_dir) / ALIGNMENT_FILE
        if state.is_world_process_zero:
            truncate_from(path, state.global_step + 1)  # keep what the checkpoint we resume from had seen
        roles = self.roles if self.roles is not None else _group_roles(optimizer)
        self.monitor = AlignmentMonitor(model, every=self.every, sample=self.sample, layers=self.layers,
                                        path=path, roles=roles, batch_dim=self.batch_dim)

    def on_step_begin(self, args, state, control, **kwargs):
        self._step = state.global_step + 1
        self._open = contextlib.ExitStack()
        self._open.enter_context(self.monitor.step(self._step))

    def on_optimizer_step(self, args, state, control, **kwargs):
        if self._open is not None:
            self._open, stack = None, self._open
            stack.close()  # records ΔW of this optimizer step (before the scheduler and zero_grad)

    def on_step_end(self, args, state, control, **kwargs):
        last = self.monitor.last
        if self.log_to is not None and last and last[0]["step"] == self._step:
            self.log_to.log(summary(last))


def summary(records: list[dict]) -> dict[str, float]:
    """``{alignment/<role>/<metric>: mean over layers}`` of one step's records (NaNs skipped)."""
    means = pd.DataFrame(records).groupby("role")[list(METRICS)].mean()
    return {f"alignment/{role}/{metric}": float(value)
            for role, row in means.iterrows() for metric, value in row.items() if not math.isnan(value)}


def _group_roles(optimizer: torch.optim.Optimizer | None) -> dict[str, str]:
    """``{parameter name: role}`` of an optimizer built on `param_groups` (empty otherwise)."""
    groups = [] if optimizer is None else optimizer.param_groups
    return {name: g["role"] for g in groups if "role" in g for name in g.get("param_names", ())}
