"""The role of every parameter under width scaling: input, hidden, output, gain or bias.

When the width grows C -> mC (Kosson et al. 2025, §2.4), only matrices whose fan-in C grows
(``hidden``, ``output``) get the width-scaled LR of Eq. 6; embeddings and other matrices whose
fan-in is fixed (``input``), normalisation weights (``gain``) and biases (``bias``) keep a
width-independent LR (Appendix G.2).

One rule labels every matrix, from which of its two fans grow with width: fan-in fixed -> input;
fan-in and fan-out grow -> hidden; fan-in grows, fan-out fixed -> output (the readout). Which
fans grow is read from one of two references (a matrix's fans are those of Eq 1's W in
`lrtransfer.layer_types`, so GPT-2's ``(in, out)`` Conv1D weight or any registered type is read the
right way round; embeddings are ``(vocab, dim)``, transposed convs ``(in, out, *kernel)``):

* ``base_model`` (trustworthy; like mup's base shapes): the same architecture at the base width,
  compared name by name. At the base width itself, where no shape differs, also pass
  ``delta_model`` (any other width, e.g. on the meta device) to show which dimensions scale; then
  every ratio is 1 and the roles are the ones every wider model gets.
* ``width_mult`` (a guess from one model and a scalar m): a matrix's fan-in is fixed when it is the
  first matrix of a model without embedding, or when no other layer outputs that many features
  (an input projection next to a positional embedding); the last matrix's fan-out is fixed (the
  readout) unless the model has a tied readout (the embedding's tensor, see below); every other
  fan grows. Every parameter gets m, except the readout's vectors (1). Module order is
  registration order, so a readout defined first, a readout that reuses the embedding outside any
  module, or an input width that equals a layer width need ``base_model`` or ``roles``.

Tied parameters (one tensor under several names, e.g. GPT-2's ``wte.weight`` and
``lm_head.weight``) appear once, under their first name, with the others in ``ParamInfo.tied``.
One tensor has one LR: when any of its names belongs to an embedding it is ``input`` (the
embedding's width-independent LR; docs/scaling.md says why). A 1-D parameter is ``bias`` when
named ``bias``, else ``gain`` in a normalisation module, else ``bias``. ``roles={fnmatch pattern:
role}`` overrides anything, matched on every name of a parameter (first match wins).
"""

from __future__ import annotations

import fnmatch
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import nn

from lrtransfer.layer_types import layer_type

Role = Literal["input", "hidden", "output", "gain", "bias"]
ROLES: tuple[str, ...] = get_args(Role)
SCALED_ROLES = ("hidden", "output")  # fan-in grows with width: LR scaled by Eq. 6 / Appendix B.1

_EMBEDDINGS = (nn.Embedding, nn.EmbeddingBag)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, *_TRANSPOSED)
_NORMS = (nn.LayerNorm, nn.RMSNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase)


@dataclass(frozen=True)
class ParamInfo:
    """How one parameter scales with width.

    Attributes:
        name: the parameter's name in ``model.named_parameters()`` (its first name if tied).
        role: ``input | hidden | output | gain | bias``.
        width_mult: m of C -> mC (Eq. 6). For hidden and output: fan-in over the base fan-in,
            the m that scales their LR. For input, gain, bias: fan-out over the base fan-out,
            for information only (their LR is not width-scaled).
        fan_in: C, inputs per output unit (``in_channels*k*k`` for convs, vocabulary for
            embeddings, 1 for vectors).
        fan_out: K, output units (``out_channels``, embedding dim, vector length).
        shape: the parameter's shape in ``model``.
        tied: the tensor's other names (tied weights, e.g. ``("lm_head.weight",)``), else ``()``.
    """

    name: str
    role: str
    width_mult: float
    fan_in: int
    fan_out: int
    shape: tuple[int, ...]
    tied: tuple[str, ...] = ()


def parameter_roles(
    model: nn.Module,
    base_model: nn.Module | None = None,
    *,
    width_mult: float | None = None,
    delta_model: nn.Module | None = None,
    roles: Mapping[str, str] | None = None,
) -> dict[str, ParamInfo]:
    """Role, width multiplier and fans of every parameter of ``model``, keyed by name.

    Give exactly one reference: ``base_model`` (same architecture at the base width; its
    parameters need the same names, ndim and kernel sizes, and no dimension larger than in
    ``model``), optionally with ``delta_model`` (the same at another width, needed when ``model``
    is the base width), or ``width_mult`` (m > 0, a guess from module types and order; see the
    module docstring). ``roles`` maps fnmatch patterns on parameter names to roles; the first
    matching pattern wins and a pattern that matches no parameter raises ``ValueError``.
    """
    _check_reference(model, base_model, width_mult, delta_model)
    params = {name: tuple(p.shape) for name, p in model.named_parameters()}
    if not params:
        raise ValueError(f"model: {type(model).__name__} has no parameters")
    tied = _tied_names(model)
    owners = {name: _owner(model, (name, *tied.get(name, ()))) for name in params}
    overrides = _match_overrides(params, tied, roles)
    if base_model is None:
        ratios = _guess_ratios(model, params, owners, tied, float(width_mult))
    else:
        ratios = _base_ratios(params, owners, base_model, delta_model)
    infos = {}
    for name, shape in params.items():
        (r_in, r_out), (grows_in, grows_out) = ratios[name]
        role = overrides.get(name) or _structural_role(name, owners[name], shape)
        if role is None:  # a matrix: which of its fans grow?
            role = "input" if not grows_in else ("hidden" if grows_out else "output")
        m = r_in if role in SCALED_ROLES else r_out
        infos[name] = ParamInfo(name, role, m, *_fans(owners[name], shape), shape, tuple(tied.get(name, ())))
    return infos


def _check_reference(model: object, base_model: object, width_mult: object, delta_model: object) -> None:
    for arg, value in (("model", model), ("base_model", base_model), ("delta_model", delta_model)):
        if (value is not None or arg == "model") and not isinstance(value, nn.Module):
            raise TypeError(f"{arg}: expected a torch.nn.Module, got {type(value).__name__}")
    if (base_model is None) == (width_mult is None):
        given = "both" if base_model is not None else "neither"
        raise ValueError(f"give exactly one of base_model or width_mult (got {given})")
    if delta_model is not None and base_model is None:
        raise ValueError("delta_model: needs base_model (it shows which dimensions differ from the base shapes)")
    if width_mult is not None:
        ok = isinstance(width_mult, numbers.Real) and not isinstance(width_mult, bool)
        if not (ok and math.isfinite(width_mult) and width_mult > 0):
            raise ValueError(f"width_mult: must be a finite number > 0, got {width_mult!r}")


def _tied_names(model: nn.Module) -> dict[str, list[str]]:
    """``{first name: [other names]}`` of every tensor registered under more than one name."""
    first: dict[int, str] = {}
    tied: dict[str, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            tied.setdefault(first[id(p)], []).append(name)
        else:
            first[id(p)] = name
    return tied


def _owner(model: nn.Module, names: tuple[str, ...]) -> nn.Module:
    """The module that defines a tensor's role: an embedding among its owners, else its first owner."""
    owners = [model.get_submodule(name.rpartition(".")[0]) for name in names]
    return next((m for m in owners if isinstance(m, _EMBEDDINGS)), owners[0])


def _match_overrides(params: Mapping[str, tuple], tied: Mapping[str, list[str]],
                     roles: Mapping[str, str] | None) -> dict[str, str]:
    """``{name: role}`` from the first pattern of ``roles`` matching any name of each parameter."""
    roles = {} if roles is None else roles
    if not isinstance(roles, Mapping):
        raise TypeError(f"roles: expected a mapping {{pattern: role}}, got {type(roles).__name__}")
    names = {name: (name, *tied.get(name, ())) for name in params}
    hits = lambda name, pattern: any(fnmatch.fnmatchcase(n, pattern) for n in names[name])  # noqa: E731
    for pattern, role in roles.items():
        if role not in ROLES:
            raise ValueError(f"roles[{pattern!r}]: {role!r} is not one of {'|'.join(ROLES)}")
        if not any(hits(name, pattern) for name in params):
            raise ValueError(f"roles: pattern {pattern!r} matches no parameter of model")
    matched = {}
    for name in params:
        role = next((r for p, r in roles.items() if hits(name, p)), None)
        if role is not None:
            matched[name] = role
    return matched


def _channels(module: nn.Module, shape: tuple[int, ...]) -> tuple[int, int]:
    """(input features, output features) of a matrix: an embedding is (vocab, dim)."""
    if isinstance(module, (*_EMBEDDINGS, *_TRANSPOSED)):  # (vocab, dim) / (in, out, *kernel)
        return shape[0], shape[1]
    kind = layer_type(module)
    if kind is not None:  # the layer table's W of Eq 1 is [fan_out, fan_in] whatever the layout (GPT-2's Conv1D)
        fan_out, fan_in = kind.weight(torch.empty(shape, device="meta")).shape
        return fan_in // math.prod(shape[2:]), fan_out
    return shape[1], shape[0]


def _fans(module: nn.Module, shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out): in features × kernel size, out features (`_channels`); a vector's is (1, length)."""
    if len(shape) <= 1:
        return 1, math.prod(shape)
    c_in, c_out = _channels(module, shape)
    return c_in * (1 if isinstance(module, _EMBEDDINGS) else math.prod(shape[2:])), c_out


def _is_matrix(module: nn.Module, shape: tuple[int, ...]) -> bool:
    if isinstance(module, _EMBEDDINGS):
        return False
    return len(shape) == 2 or (len(shape) > 2 and isinstance(module, _CONVS))


def _vector_role(name: str, module: nn.Module) -> str:
    is_norm = isinstance(module, _NORMS) or "Norm" in type(module).__name__
    return "gain" if is_norm and name.rpartition(".")[2] != "bias" else "bias"


def _structural_role(name: str, module: nn.Module, shape: tuple[int, ...]) -> str | None:
    """Role that needs no reference (vectors, embeddings); None for matrices."""
    if len(shape) <= 1:
        return _vector_role(name, module)
    if isinstance(module, _EMBEDDINGS):
        return "input"
    if not _is_matrix(module, shape):
        raise ValueError(
            f"{name}: cannot infer the role of a {len(shape)}-D parameter of {type(module).__name__}; "
            f"give it one with roles={{{name!r}: ...}}"
        )
    return None


Ratios = tuple[tuple[float, float], tuple[bool, bool]]  # (fan-in, fan-out) ratios, and whether each grows


def _guess_ratios(model, params, owners, tied, m: float) -> dict[str, Ratios]:
    """Which fans grow, guessed from one model (module docstring, ``width_mult``); ratios m or 1."""
    matrices = [n for n, s in params.items() if _is_matrix(owners[n], s)]
    embeddings = [n for n in params if isinstance(owners[n], _EMBEDDINGS)]
    outs = {n: _channels(owners[n], params[n])[1] for n in matrices + embeddings}
    tied_readout = any(not isinstance(model.get_submodule(name.rpartition(".")[0]), _EMBEDDINGS)
                       for n in embeddings if n in tied for name in (n, *tied[n]))
    readout = matrices[-1] if matrices and not tied_readout else None
    grows: dict[str, tuple[bool, bool]] = {}
    for name in matrices:
        c_in = _channels(owners[name], params[name])[0]
        fixed_in = (name == matrices[0] and not embeddings) or c_in not in {c for n, c in outs.items() if n != name}
        grows[name] = (not fixed_in, name != readout)
    for name in params:  # embeddings and vectors: fan-in fixed; the readout's vectors do not grow
        grows.setdefault(name, (False, readout is None or owners[name] is not owners[readout]))
    return {name: ((m if g_in else 1.0, m if g_out else 1.0), (g_in, g_out)) for name, (g_in, g_out) in grows.items()}


def _base_ratios(params, owners, base_model: nn.Module, delta_model: nn.Module | None) -> dict[str, Ratios]:
    """Fan ratios model / base_model; a fan grows where model (or delta_model) differs from the base."""
    base = _shapes_like(params, base_model, "base_model")
    for name, shape in params.items():
        _check_against_base(name, shape, base[name], owners[name], "model")
    delta = params if delta_model is None else _shapes_like(params, delta_model, "delta_model")
    for name, shape in delta.items():
        _check_against_base(name, shape, base[name], owners[name], "delta_model")
    if all(shape == base[name] for name, shape in delta.items()):
        which = "model" if delta_model is None else "delta_model"
        raise ValueError(
            f"base_model: every parameter has the same shape as in {which}, so nothing scales with width; "
            "for the base-width model itself pass delta_model (the model at another width) or width_mult=1"
        )
    ratios = {}
    for name, shape in params.items():
        (f_in, f_out), (b_in, b_out) = _fans(owners[name], shape), _fans(owners[name], base[name])
        d_in, d_out = _fans(owners[name], delta[name])
        ratios[name] = ((f_in / b_in, f_out / b_out), (f_in != b_in or d_in != b_in, f_out != b_out or d_out != b_out))
    return ratios


def _shapes_like(params: Mapping[str, tuple], reference: nn.Module, arg: str) -> dict[str, tuple]:
    """``{name: shape}`` of ``reference``, which must have exactly the parameter names of model."""
    shapes = {name: tuple(p.shape) for name, p in reference.named_parameters()}
    extra = [name for name in shapes if name not in params]
    if extra:
        raise ValueError(f"{arg}: has parameter {extra[0]!r} that model lacks")
    missing = [name for name in params if name not in shapes]
    if missing:
        raise ValueError(f"{missing[0]}: {arg} has no parameter of this name")
    return shapes


def _check_against_base(name: str, shape: tuple, base_shape: tuple, module: nn.Module, arg: str) -> None:
    """``shape`` (of ``arg``: model or delta_model) may only grow channels over ``base_shape``."""
    where = "" if arg == "model" else f"{arg}: "
    if len(shape) != len(base_shape):
        raise ValueError(f"{where}{name}: shape {shape} has a different ndim than base_model's {base_shape}")
    if isinstance(module, _CONVS) and shape[2:] != base_shape[2:]:
        raise ValueError(
            f"{where}{name}: kernel {shape[2:]} differs from base_model's {base_shape[2:]}; only channels may scale"
        )
    if any(s < b for s, b in zip(shape, base_shape)):
        raise ValueError(
            f"{where}{name}: shape {shape} is smaller than base_model's {base_shape}; base_model must be the narrow one"
        )
