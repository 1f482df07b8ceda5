"""The role of every parameter under width scaling: input, hidden, output, gain or bias.

When the width grows C -> mC (Kosson et al. 2025, §2.4), only matrices whose fan-in C grows
(``hidden``, ``output``) get the width-scaled LR of Eq. 6; embeddings and other matrices whose
fan-in is fixed (``input``), normalisation weights (``gain``) and biases (``bias``) keep a
width-independent LR (Appendix G.2). Roles come from one of two references:

* ``base_model``: the same architecture at the base (1x) width, compared name by name, like
  mup's base shapes: fan-in grew and fan-out grew -> hidden; fan-in grew, fan-out fixed -> output;
  fan-in fixed -> input.
* ``width_mult``: a scalar m, with roles from module types and module order: embeddings -> input;
  the first matrix-like layer -> input when the model has no embedding; the last -> output;
  every other matrix -> hidden. Every parameter gets m, except the readout's vectors (fan-out
  fixed: 1). Module order is registration order, so a readout defined first needs ``roles``.

In both, a 1-D parameter is ``bias`` when named ``bias``, else ``gain`` in a normalisation module,
else ``bias``. ``roles={fnmatch pattern: role}`` overrides anything (first match wins).
"""

from __future__ import annotations

import fnmatch
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from torch import nn

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
        name: the parameter's name in ``model.named_parameters()``.
        role: ``input | hidden | output | gain | bias``.
        width_mult: m of C -> mC (Eq. 6). For hidden and output: fan-in over the base fan-in,
            the m that scales their LR. For input, gain, bias: fan-out over the base fan-out,
            for information only (their LR is not width-scaled).
        fan_in: C, inputs per output unit (``in_channels*k*k`` for convs, vocabulary for
            embeddings, 1 for vectors).
        fan_out: K, output units (``out_channels``, embedding dim, vector length).
        shape: the parameter's shape in ``model``.
    """

    name: str
    role: str
    width_mult: float
    fan_in: int
    fan_out: int
    shape: tuple[int, ...]


def parameter_roles(
    model: nn.Module,
    base_model: nn.Module | None = None,
    *,
    width_mult: float | None = None,
    roles: Mapping[str, str] | None = None,
) -> dict[str, ParamInfo]:
    """Role, width multiplier and fans of every parameter of ``model``, keyed by name.

    Give exactly one reference: ``base_model`` (same architecture at the base width; its
    parameters need the same names, ndim and kernel sizes, and no dimension larger than in
    ``model``) or ``width_mult`` (m > 0, roles inferred from module types and order; see the
    module docstring). ``roles`` maps fnmatch patterns on parameter names to roles; the first
    matching pattern wins and a pattern that matches no parameter raises ``ValueError``.
    """
    _check_reference(model, base_model, width_mult)
    params = {name: tuple(p.shape) for name, p in model.named_parameters()}
    if not params:
        raise ValueError(f"model: {type(model).__name__} has no parameters")
    overrides = _match_overrides(params, roles)
    owners = {name: model.get_submodule(name.rpartition(".")[0]) for name in params}
    if base_model is None:
        return _from_width_mult(params, owners, float(width_mult), overrides)
    return _from_base_model(params, owners, base_model, overrides)


def _check_reference(model: object, base_model: object, width_mult: object) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if (base_model is None) == (width_mult is None):
        given = "both" if base_model is not None else "neither"
        raise ValueError(f"give exactly one of base_model or width_mult (got {given})")
    if base_model is not None and not isinstance(base_model, nn.Module):
        raise TypeError(f"base_model: expected a torch.nn.Module, got {type(base_model).__name__}")
    if width_mult is not None:
        ok = isinstance(width_mult, numbers.Real) and not isinstance(width_mult, bool)
        if not (ok and math.isfinite(width_mult) and width_mult > 0):
            raise ValueError(f"width_mult: must be a finite number > 0, got {width_mult!r}")


def _match_overrides(params: Mapping[str, tuple], roles: Mapping[str, str] | None) -> dict[str, str]:
    """``{name: role}`` from the first pattern of ``roles`` that matches each name."""
    roles = {} if roles is None else roles
    if not isinstance(roles, Mapping):
        raise TypeError(f"roles: expected a mapping {{pattern: role}}, got {type(roles).__name__}")
    for pattern, role in roles.items():
        if role not in ROLES:
            raise ValueError(f"roles[{pattern!r}]: {role!r} is not one of {'|'.join(ROLES)}")
        if not any(fnmatch.fnmatchcase(name, pattern) for name in params):
            raise ValueError(f"roles: pattern {pattern!r} matches no parameter of model")
    matched = {}
    for name in params:
        role = next((r for p, r in roles.items() if fnmatch.fnmatchcase(name, p)), None)
        if role is not None:
            matched[name] = role
    return matched


def _fans(module: nn.Module, shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out): a weight is (out, in, *kernel), an embedding (vocab, dim)."""
    if len(shape) <= 1:
        return 1, math.prod(shape)
    if isinstance(module, _EMBEDDINGS):
        return shape[0], shape[1]
    if isinstance(module, _TRANSPOSED):  # (in, out/groups, *kernel)
        return shape[0] * math.prod(shape[2:]), shape[1]
    return math.prod(shape[1:]), shape[0]


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


def _from_width_mult(params, owners, m: float, overrides) -> dict[str, ParamInfo]:
    matrices = [n for n, s in params.items() if _is_matrix(owners[n], s)]
    has_embedding = any(isinstance(mod, _EMBEDDINGS) for mod in owners.values())
    by_position = {n: "hidden" for n in matrices}
    if matrices and not has_embedding:
        by_position[matrices[0]] = "input"
    if matrices:
        by_position[matrices[-1]] = "output"
    found = {
        name: overrides.get(name) or _structural_role(name, owners[name], shape) or by_position[name]
        for name, shape in params.items()
    }
    readouts = {id(owners[n]) for n, role in found.items() if role == "output"}
    infos = {}
    for name, shape in params.items():
        # The readout's fan-out is fixed, so its bias's fan-out ratio is 1, as a base model would show.
        fixed = len(shape) <= 1 and id(owners[name]) in readouts
        infos[name] = ParamInfo(name, found[name], 1.0 if fixed else m, *_fans(owners[name], shape), shape)
    return infos


def _from_base_model(params, owners, base_model: nn.Module, overrides) -> dict[str, ParamInfo]:
    base = {name: tuple(p.shape) for name, p in base_model.named_parameters()}
    extra = [name for name in base if name not in params]
    if extra:
        raise ValueError(f"base_model: has parameter {extra[0]!r} that model lacks")
    infos = {}
    for name, shape in params.items():
        _check_against_base(name, shape, base.get(name), owners[name])
        fan_in, fan_out = _fans(owners[name], shape)
        base_in, base_out = _fans(owners[name], base[name])
        r_in, r_out = fan_in / base_in, fan_out / base_out
        role = overrides.get(name) or _structural_role(name, owners[name], shape)
        if role is None:  # a matrix: which of its dimensions grew?
            role = "input" if r_in == 1 else ("hidden" if r_out != 1 else "output")
        m = r_in if role in SCALED_ROLES else r_out
        infos[name] = ParamInfo(name, role, m, fan_in, fan_out, shape)
    if all(shape == base[name] for name, shape in params.items()):
        raise ValueError(
            "base_model: every parameter has the same shape as in model, so nothing scales with width; "
            "for the base-width model itself pass width_mult=1 instead"
        )
    return infos


def _check_against_base(name: str, shape: tuple, base_shape: tuple | None, module: nn.Module) -> None:
    if base_shape is None:
        raise ValueError(f"{name}: base_model has no parameter of this name")
    if len(shape) != len(base_shape):
        raise ValueError(f"{name}: shape {shape} has a different ndim than base_model's {base_shape}")
    if isinstance(module, _CONVS) and shape[2:] != base_shape[2:]:
        raise ValueError(
            f"{name}: kernel {shape[2:]} differs from base_model's {base_shape[2:]}; only channels may scale"
        )
    if any(s < b for s, b in zip(shape, base_shape)):
        raise ValueError(
            f"{name}: shape {shape} is smaller than base_model's {base_shape}; base_model must be the narrow one"
        )
