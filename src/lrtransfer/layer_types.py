"""The table of matrix-like module types: how each is read as Eq 1's ``Y = W X``.

One entry per type says what a batched input looks like, how the input becomes X (as rows
``[samples·positions, fan_in]``) and how the weight parameter becomes W (``[fan_out, fan_in]``).
`lrtransfer.monitor` measures every module found here, and `lrtransfer.roles` reads a module's
fan-in and fan-out from the same W, so registering a type teaches both.

Built in: ``nn.Linear``, ``nn.Conv1d``, ``nn.Conv2d`` (X is the im2col matrix, so
``fan_in = C_in·∏kernel``) and transformers' ``Conv1D`` (GPT-2: ``y = x @ weight + b`` with
``weight`` of shape ``(in, out)``, so W is its transpose), matched by name so that transformers
stays optional. Add another with `register_layer_type`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def _linear_rows(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """X as rows ``[samples·positions, in_features]``: the transpose of Eq 1's X, same norms."""
    return x.reshape(-1, x.shape[-1])


def _conv_rows(module: nn.Conv1d | nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """im2col rows ``[N·L, C_in·∏kernel]``, so that ``conv(x, W) = rows @ W.view(C_out, -1).T``."""
    # Pad as the layer does (handles 'same' and non-zero padding modes), then unfold unpadded.
    mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
    x = F.pad(x, module._reversed_padding_repeated_twice, mode=mode)
    kernel, dilation, stride = module.kernel_size, module.dilation, module.stride
    if x.dim() == 3:  # Conv1d: unfold a height-1 image
        x, kernel, dilation, stride = x.unsqueeze(2), (1, *kernel), (1, *dilation), (1, *stride)
    cols = F.unfold(x, kernel, dilation=dilation, stride=stride)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def flat_weight(weight: torch.Tensor) -> torch.Tensor:
    """Eq 1's W of a torch-layout weight ``(out, in, *kernel)``: ``[out, in·∏kernel]``."""
    return weight.reshape(weight.shape[0], -1)


def _transposed_weight(weight: torch.Tensor) -> torch.Tensor:
    """Eq 1's W of an ``(in, out)`` weight (transformers' Conv1D computes ``x @ weight``)."""
    return weight.T


@dataclass(frozen=True)
class LayerType:
    """How the monitor reads one module type as ``Y = W X`` (Eq 1); see `register_layer_type`."""

    batched_ndim: int
    rows: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    weight: Callable[[torch.Tensor], torch.Tensor] = flat_weight
    batch_dim: int | None = None  # fixed batch dim of the input (convs: 0); None: the monitor's


# The one table of measurable module types: a class, or "module.QualName" so that an optional
# library (transformers) is matched without being imported. Subclasses match too.
_TYPES: dict[type[nn.Module] | str, LayerType] = {
    nn.Linear: LayerType(2, _linear_rows),
    nn.Conv1d: LayerType(3, _conv_rows, batch_dim=0),
    nn.Conv2d: LayerType(4, _conv_rows, batch_dim=0),
    "transformers.pytorch_utils.Conv1D": LayerType(2, _linear_rows, _transposed_weight),
}


def register_layer_type(cls: type[nn.Module] | str, batched_ndim: int,
                        rows_fn: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                        weight_fn: Callable[[torch.Tensor], torch.Tensor] = flat_weight, *,
                        batch_dim: int | None = None) -> None:
    """Let `AlignmentMonitor` measure modules of type ``cls`` (and its subclasses) by Eq 1, Y = W X.

    Args:
        cls: the module class, or its ``"module.QualName"`` (matched without importing it). Its
            ``weight`` parameter is the matrix; the monitor hooks its forward input.
        batched_ndim: ndim of a batched input; an input with fewer dims is one unbatched sample.
        rows_fn: ``(module, input) -> X`` as rows ``[samples·positions, fan_in]`` with
            ``rows @ weight_fn(module.weight).T`` = the layer's output without bias.
        weight_fn: ``weight -> W`` as ``[fan_out, fan_in]`` (default: torch's ``(out, in, ...)`` layout).
        batch_dim: the input dim that indexes samples for this type; None follows the monitor's.

    >>> register_layer_type(MyLinear, 2, lambda m, x: x.reshape(-1, x.shape[-1]))
    """
    if not (isinstance(cls, str) or (isinstance(cls, type) and issubclass(cls, nn.Module))):
        raise TypeError(f"cls: expected an nn.Module subclass or its 'module.QualName', got {cls!r}")
    if isinstance(batched_ndim, bool) or not isinstance(batched_ndim, int) or batched_ndim < 1:
        raise ValueError(f"batched_ndim: must be an int >= 1, got {batched_ndim!r}")
    for arg, fn in (("rows_fn", rows_fn), ("weight_fn", weight_fn)):
        if not callable(fn):
            raise TypeError(f"{arg}: expected a callable, got {type(fn).__name__}")
    _TYPES[cls] = LayerType(batched_ndim, rows_fn, weight_fn, batch_dim)


def layer_type(module: nn.Module) -> LayerType | None:
    """The table entry that measures ``module`` (nearest class in its MRO), or None."""
    for cls in type(module).__mro__:
        kind = _TYPES.get(cls) or _TYPES.get(f"{cls.__module__}.{cls.__qualname__}")
        if kind is not None:
            return kind
    return None
