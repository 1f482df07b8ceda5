"""Probe arithmetic on sharded (FSDP2 / DTensor) and data-parallel (DDP) models, equal to the unsharded one.

Under ``torch.distributed.fsdp.fully_shard`` a parameter is a ``DTensor``: each rank holds one shard,
and ``mm`` with a plain tensor fails. Under DDP every rank holds the whole parameter. Either way each
rank sees only its own micro-batch. A probe that wants what the unsharded model computes on the
global batch (all ranks' micro-batches together) combines two collectives, which every rank must
call in the same order on the same steps:

- `full_tensor`: a DTensor gathered to the whole matrix (``DTensor.full_tensor()``); a plain tensor
  as it is. Gathering, rather than summing partial norms and inner products of the shards, is correct
  for any placement (FSDP's ``Shard(0)``, HSDP's 2-D mesh, a ``Shard(1)`` weight) and lets a layer
  type's ``weight_fn`` (a transpose, a conv flatten) see the matrix it sees unsharded. It costs one
  all-gather per weight, as FSDP's own forward does; a probe calls it on measured steps only, one
  layer at a time, so at most one layer's full weight is alive beside the model.
- `sum_over_ranks`: squared Frobenius norms over the rows of X are sums over rows, so the sum over
  ranks of each rank's ‖X_r‖², ‖W X_r‖² is the square of the norm over the concatenated batch.

`mean_over_ranks` averages a scalar such as a loss; `module_class` names a ``fully_shard``-ed
module by its own class. Ranks are the data-parallel group: the default process group (every rank
trains on its own micro-batch). Tensor or sequence parallelism, where ranks share a batch, is not covered.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

try:
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor
except ImportError:  # a torch build without torch.distributed: nothing is sharded
    DTensor = FSDPModule = ()  # isinstance(x, ()) and issubclass(c, ()) are always False


def world_size() -> int:
    """Ranks in the default process group; 1 outside torch.distributed."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank in the default process group; 0 outside torch.distributed."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_sharded(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is a DTensor (a parameter of a ``fully_shard``-ed module)."""
    return isinstance(tensor, DTensor)


def module_class(module: nn.Module) -> type[nn.Module]:
    """The module's own class: ``fully_shard`` swaps in a subclass ``FSDP<Name>`` of `FSDPModule` and it."""
    return next(c for c in type(module).__mro__ if not issubclass(c, FSDPModule))


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor as a plain tensor: a DTensor all-gathered (collective), anything else as is."""
    return tensor.full_tensor() if is_sharded(tensor) else tensor


def sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """The elementwise sum of ``tensor`` over all ranks (collective); itself outside torch.distributed."""
    if world_size() == 1:
        return tensor
    total = tensor.clone(memory_format=torch.contiguous_format)  # collectives need contiguous memory
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of ``value`` over ranks (collective): a loss averaged over equal micro-batches is the global one."""
    return sum_over_ranks(value.detach()) / world_size()
