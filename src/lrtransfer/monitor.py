"""Per-layer alignment probe: the quantities of Eq 1, 2 and 4, measured during real training.

Each matrix-like module (``nn.Linear``, ``nn.Conv1d``, ``nn.Conv2d``, transformers' ``Conv1D``, or a
type added with `register_layer_type`) is read as ``Y = W X`` (Eq 1): α_W = ‖WX‖/(‖W‖‖X‖) (§2.2),
α_ΔW = ‖ΔW X‖/(‖ΔW‖‖X‖) (Eq 2), and ‖ΔY‖/‖Y‖ = (α_ΔW/α_W)·‖ΔW‖/‖W‖ (Eq 4) are recorded with the
Frobenius norms they are ratios of (column names in ``RATIOS`` and ``NORMS``). Conventions:

- X: the layer input of the step's first forward call with gradients enabled, cut to the first
  ⌈sample·N⌉ (≥ 1) entries of the batch dimension (``batch_dim``: 0, or 1 for seq-first inputs;
  the paper uses 1/64 of a batch, G.3.2). Forwards under ``torch.no_grad()`` / inference mode (an
  eval or logging forward inside a step) are ignored. A conv input is its im2col matrix
  (``F.unfold`` after the layer's own padding): ``fan_in = C_in·k`` (Conv1d), ``C_in·kh·kw`` (Conv2d).
- W: the weight at the start of the step as Eq 1's ``[fan_out, fan_in]`` matrix (``Conv1D`` keeps
  ``[in, out]``, so its W is the transpose); ΔW: all the optimizer step did to it (gradient term
  and weight decay). Y = WX and ΔY = ΔW X exclude the bias. The table of types is `lrtransfer.layer_types`.
- Gradient accumulation: wrap the whole optimizer step (every micro-batch, then ``opt.step()``);
  X comes from the first micro-batch's forward, ΔW is the update of the whole step.
- A ratio with a zero denominator is undefined: recorded as NaN, never raised. A frozen layer
  (ΔW = 0) has NaN update_alignment and alignment_ratio, zero relative_update and relative_repr_change.
  Eq 4 holds wherever its terms are defined, to float64 rounding (all metrics use the same norms).
- A layer not called during the step gets no record; grouped convolutions are skipped (warned).
- Distributed (DDP, FSDP2 ``fully_shard``, any model under an initialised process group): every rank
  must enter every step (the measured ones are collectives), each rank samples X from its own
  micro-batch as above, and the records, kept and written on rank 0 only, are the unsharded
  computation with X = the ranks' samples stacked in rank order: W and ΔW of a sharded (DTensor)
  weight are gathered whole, and the squared norms of X, WX and ΔWX are summed over ranks
  (`lrtransfer.sharded`). With ``sample=1`` that is exactly the unsharded model on the global batch.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import math
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from pydantic import Field
from torch import nn

from lrtransfer import sharded
from lrtransfer.layer_types import LayerType, layer_type
from lrtransfer.layer_types import register_layer_type as register_layer_type  # public here too
from lrtransfer.records import jsonl
from lrtransfer.strict import Strict

NORMS = ("weight_norm", "update_norm", "input_norm", "output_norm", "output_change_norm")
# metric -> (numerator, denominator factors), evaluated in order on the float64 norms (Eq 2, 4).
RATIOS: dict[str, tuple[str, tuple[str, ...]]] = {
    "weight_alignment": ("output_norm", ("weight_norm", "input_norm")),  # α_W
    "update_alignment": ("output_change_norm", ("update_norm", "input_norm")),  # α_ΔW, Eq 2
    "alignment_ratio": ("update_alignment", ("weight_alignment",)),  # Eq 4
    "relative_update": ("update_norm", ("weight_norm",)),  # Eq 3, 6
    "relative_repr_change": ("output_change_norm", ("output_norm",)),  # Eq 4, left side
}
METRICS = tuple(RATIOS)
COLUMNS = ("step", "layer", "role", "fan_in", "fan_out", *METRICS, *NORMS)
_DTYPES = {"step": "int64", "fan_in": "int64", "fan_out": "int64", **{c: "float64" for c in COLUMNS[5:]}}


def read_records(path: str | Path) -> pd.DataFrame:
    """The tidy frame of a JSON-lines file written by ``AlignmentMonitor(path=...)``."""
    return _frame(jsonl.read(path))


def _frame(records: list[dict]) -> pd.DataFrame:
    """Records with fixed columns and dtypes, so in-memory and read-back frames are equal."""
    return pd.DataFrame(records, columns=list(COLUMNS)).astype(_DTYPES)


@dataclass
class _Layer:
    name: str
    module: nn.Module
    role: str
    kind: LayerType
    hook: Callable | None = None  # created once, so torch.compile sees the same hook every step


class AlignmentMonitor:
    """Probe recording the Eq 2/4 metrics of every ``every``-th step: ``with monitor.step(step): ...``.

    Hooks exist only inside a measured step and are removed on exit, also when the body raises
    (then nothing is recorded). ``layers``: module names or fnmatch patterns (default: every
    measurable module, see `register_layer_type`); a pattern matching none raises. ``roles``:
    parameter (``"a.b.weight"``, any name of a tied weight) or module name -> role or `ParamInfo`
    (pass ``parameter_roles(model, base)``), else "unknown". ``batch_dim``: the dim of a layer
    input that indexes samples (1 for seq-first ``[T, B, d]``); inputs with at most
    ``batch_dim + 1`` dims (a pooled ``[B, d]``) and conv inputs use dim 0. ``path``: JSON lines
    appended after each measured step (a resumed run appends); ``last`` holds the latest measured
    step's records. Under torch.distributed every rank enters every step and rank 0 records the
    metrics of all ranks' samples together (module docstring).
    """

    def __init__(self, model: nn.Module, every: int = 10, sample: float = 1 / 64,
                 layers: Sequence[str] | str | None = None, path: str | Path | None = None,
                 roles: Mapping[str, str] | None = None, batch_dim: int = 0):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
        check_arguments(every, sample, batch_dim)
        self.model, self.every, self.sample, self.batch_dim = unwrap(model), every, float(sample), batch_dim
        self.path = Path(path) if path is not None else None
        self._layers = _select(self.model, [layers] if isinstance(layers, str) else layers, roles or {})
        for layer in self._layers:
            layer.hook = functools.partial(self._capture, layer)
        self._records: list[dict] = []
        self.last: list[dict] = []  # the records of the latest measured step
        self._inputs: dict[str, torch.Tensor] = {}

    @property
    def layers(self) -> list[str]:
        """Names of the measured modules, in model order."""
        return [layer.name for layer in self._layers]

    def measures(self, step: int) -> bool:
        """Whether ``step`` is recorded here (a multiple of ``every``, and rank 0 if distributed)."""
        return sharded.rank() == 0 and step % self.every == 0

    @contextlib.contextmanager
    def step(self, step: int) -> Iterator[None]:
        """Wrap one full training step (forward, backward, optimizer step); every rank enters it."""
        if step % self.every:
            yield
            return
        # W is cloned only on measured steps (a DTensor: this rank's shard); ΔW = W after the step - this copy.
        before = {layer.name: layer.module.weight.detach().clone() for layer in self._layers}
        handles = [layer.module.register_forward_pre_hook(layer.hook, with_kwargs=True) for layer in self._layers]
        try:
            yield  # on an exception: hooks removed, inputs dropped, nothing recorded
        finally:
            for handle in handles:
                handle.remove()
            inputs, self._inputs = self._inputs, {}
        records = self.last = self._measure(step, before, inputs)
        self._records.extend(records)
        if self.path is not None and self.measures(step):  # rank 0 writes
            jsonl.append(self.path, records)

    @property
    def records(self) -> list[dict]:
        """This monitor's records so far, one dict per measured step and layer (`COLUMNS`)."""
        return list(self._records)

    def frame(self) -> pd.DataFrame:
        """This monitor's records (one row per measured step and layer) as a tidy DataFrame."""
        return _frame(self._records)

    read = staticmethod(read_records)  # AlignmentMonitor.read(path) -> DataFrame

    def _capture(self, layer: _Layer, module: nn.Module, args: tuple, kwargs: dict) -> None:
        """Forward pre-hook: keep a small copy of the sampled input of the step's first training call."""
        if layer.name in self._inputs or not torch.is_grad_enabled():  # no grad: an eval forward, not the step's
            return
        x = args[0] if args else next(iter(kwargs.values()))
        x = x.unsqueeze(0) if x.dim() < layer.kind.batched_ndim else x  # an unbatched call is one sample
        dim = self.batch_dim if layer.kind.batch_dim is None and x.dim() > self.batch_dim + 1 else 0
        # Copy the sample so the hook does not keep the whole activation alive past backward.
        self._inputs[layer.name] = x.narrow(dim, 0, sample_size(x.shape[dim], self.sample)).detach().clone()

    @torch.no_grad()
    def _measure(self, step: int, before: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor]) -> list[dict]:
        # Every rank runs every layer in the same order: the gathers and the one all-reduce must match.
        local = [_layer_squares(layer, inputs.get(layer.name), before[layer.name]) for layer in self._layers]
        device = local[0][1].device  # the collective's device (gloo: CPU, NCCL: the GPU)
        squares = torch.stack([sq.to(device) for _, sq in local])
        squares[:, 2:] = sharded.sum_over_ranks(squares[:, 2:])  # X-side squares and the count of ranks with X
        if sharded.rank() != 0:
            return []
        values = squares.cpu().tolist()  # one device sync
        measured = [(layer, shape, v) for layer, (shape, _), v in zip(self._layers, local, values) if v[-1] > 0]
        if not measured:  # e.g. a torch.compile'd model that ignores the hooks
            warnings.warn(f"AlignmentMonitor: step {step}: no monitored layer ran a forward", stacklevel=4)
            return []
        return [_record(step, layer, shape, dict(zip(NORMS, map(math.sqrt, v[:-1])))) for layer, shape, v in measured]


def check_arguments(every: object, sample: object, batch_dim: object) -> None:
    """Raise ValueError naming the first bad one of `AlignmentMonitor`'s ``every``, ``sample``, ``batch_dim``."""
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every: must be an int >= 1, got {every!r}")
    if isinstance(sample, bool) or not isinstance(sample, (int, float)) or not 0 < sample <= 1:
        raise ValueError(f"sample: must be a fraction in (0, 1], got {sample!r}")
    if isinstance(batch_dim, bool) or not isinstance(batch_dim, int) or batch_dim < 0:
        raise ValueError(f"batch_dim: must be an int >= 0, got {batch_dim!r}")


def _layer_squares(layer: _Layer, x: torch.Tensor | None,
                   w0: torch.Tensor) -> tuple[tuple[int, int], torch.Tensor]:
    """W's shape and the float64 squares of the Eq 2/4 norms (`NORMS`) of one layer, then 1 if this rank
    has its X (else the X-side squares and the count are 0); W is gathered whole if sharded."""
    w = sharded.full_tensor(layer.module.weight.detach())
    w0 = sharded.full_tensor(w0)
    dtype = torch.promote_types(w.dtype, torch.float32)
    vn = torch.linalg.vector_norm
    with torch.autocast(w.device.type, enabled=False):
        w0 = layer.kind.weight(w0.to(dtype))
        delta = layer.kind.weight(w.to(dtype)) - w0
        norms = [vn(w0), vn(delta)]
        if x is None:
            norms += [w0.new_zeros(())] * 4
        else:
            rows = layer.kind.rows(layer.module, x.to(w.device, dtype))
            norms += [vn(rows), vn(rows @ w0.T), vn(rows @ delta.T), w0.new_ones(())]
    # Squares of float32 norms are exact in float64, so one process recovers each norm exactly.
    return tuple(w0.shape), torch.stack(norms).double().square()


def _record(step: int, layer: _Layer, shape: tuple[int, int], norms: dict[str, float]) -> dict:
    """One tidy row; every metric is a ratio of the same float64 norms, so Eq 4 holds exactly."""
    fan_out, fan_in = shape
    values = dict(norms)
    for name, (num, den) in RATIOS.items():
        values[name] = _ratio(values[num], math.prod(values[d] for d in den))
    return {"step": step, "layer": layer.name, "role": layer.role, "fan_in": fan_in, "fan_out": fan_out,
            **{c: values[c] for c in COLUMNS[5:]}}


def _ratio(num: float, den: float) -> float:
    """num / den, NaN where undefined (zero or NaN denominator)."""
    return num / den if den != 0 and not math.isnan(den) else math.nan


def sample_size(batch: int, fraction: float) -> int:
    """⌈fraction·batch⌉, at least 1 (a hair of slack so 0.1·30 counts as 3, not 4)."""
    return max(1, math.ceil(fraction * batch - 1e-9))


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DistributedDataParallel / DataParallel (``.module``) or torch.compile."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            _check_compiled()
            model = model._orig_mod
        else:
            return model


def _check_compiled() -> None:
    """Dynamo by default ignores hooks added after compilation: records would silently stop."""
    dynamo = sys.modules.get("torch._dynamo")
    if dynamo is not None and dynamo.config.skip_nnmodule_hook_guards:
        raise ValueError("model: is torch.compile'd; set torch._dynamo.config.skip_nnmodule_hook_guards = False "
                         "before its first forward, or dynamo ignores the monitor's hooks (one extra graph)")


def _select(model: nn.Module, layers: Sequence[str] | None, roles: Mapping[str, str]) -> list[_Layer]:
    """Measurable modules matching ``layers`` (all by default); a pattern matching none raises."""
    found = {name: m for name, m in model.named_modules() if layer_type(m) is not None}
    for pattern in layers or []:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in found):
            raise ValueError(f"layers: {pattern!r} matches no measurable module ({_KNOWN})")
    chosen = [n for n in found if layers is None or any(fnmatch.fnmatchcase(n, p) for p in layers)]
    grouped = [n for n in chosen if getattr(found[n], "groups", 1) != 1]
    if grouped:
        warnings.warn(f"AlignmentMonitor: skipping grouped convolutions (groups > 1): {grouped}", stacklevel=3)
    chosen = [n for n in chosen if n not in grouped]
    if not chosen:
        raise ValueError(f"layers: nothing to measure (no ungrouped {_KNOWN} selected)")
    first_names = {id(p): n for n, p in model.named_parameters()}  # a tied weight's roles key
    return [_Layer(n, found[n], _role(roles, n, first_names.get(id(found[n].weight))), layer_type(found[n]))
            for n in chosen]


_KNOWN = "nn.Linear, nn.Conv1d, nn.Conv2d, transformers Conv1D or a type given to register_layer_type"


def _role(roles: Mapping, name: str, weight_name: str | None) -> str:
    """The role of module ``name``: values may be role strings or `ParamInfo` (``parameter_roles``)."""
    keys = (f"{name}.weight", weight_name, name)
    role = next((roles[k] for k in keys if k in roles), "unknown")
    return str(getattr(role, "role", role))


class MonitorConfig(Strict):
    """Per-layer alignment diagnostics (Eq 2, 4) recorded by `AlignmentMonitor` during a run."""

    enabled: bool = Field(True, description="Record alignment metrics on measured steps.")
    every: int = Field(10, ge=1, description="Measure every this many steps.")
    sample: float = Field(1 / 64, gt=0, le=1, description="Fraction of each (rank's micro-)batch used as X.")
    layers: list[str] | None = Field(None, description="Module names or glob patterns to measure; default all.")

    def build(self, model: nn.Module, path: str | Path | None = None,
              roles: Mapping[str, str] | None = None) -> AlignmentMonitor | NullMonitor:
        """The run's monitor, or a `NullMonitor` that measures nothing when disabled."""
        if not self.enabled:
            return NullMonitor()
        return AlignmentMonitor(model, every=self.every, sample=self.sample, layers=self.layers, path=path,
                                roles=roles)


class NullMonitor:
    """The monitor of a run that measures nothing: same ``step`` context and ``frame``, no records."""

    def step(self, step: int) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    @property
    def records(self) -> list[dict]:
        return []

    def frame(self) -> pd.DataFrame:
        return _frame([])
