"""Training on several processes: ``torchrun`` starts them, PyTorch's DistributedDataParallel keeps
their models in step.

``torchrun --nproc-per-node N -m inversionview train-decoder …`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous in each process's environment; ``join`` reads them and joins the
group (gloo on CPUs, NCCL on GPUs, one device per process). Without torchrun, ``join`` returns a
single rank and every helper here does nothing, so one process trains exactly as it always did.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from inversionview.errors import UserError

log = logging.getLogger(__name__)

COLLECTIVE_TIMEOUT_S = 120
"""How long a process waits for the others at a collective before the run ends with an error."""


class RankLost(UserError):
    """Another process of the run ended: the rest stop too, and say so in one line."""


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run: rank 0 of 1 without torchrun."""

    rank: int = 0
    world: int = 1
    backend: str | None = None

    @property
    def main(self) -> bool:
        """Rank 0 alone evaluates, logs, checkpoints and writes the model."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def agree(self, *flags: bool) -> list[bool]:
        """Each flag, true on every rank when it is true on any (a stop asked of one stops all)."""
        return [bool(v) for v in self.largest(*(float(f) for f in flags))]

    def largest(self, *values: float) -> list[float]:
        """Each value's largest over the ranks (so that every rank steps by the same clock)."""
        if not self.active:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self._device())
        _collective(dist.all_reduce, tensor, op=dist.ReduceOp.MAX)
        return tensor.tolist()

    def from_main(self, value):
        """Rank 0's ``value`` (any picklable object), on every rank."""
        if not self.active:
            return value
        box = [value if self.main else None]
        _collective(dist.broadcast_object_list, box, src=0)
        return box[0]

    def gathered(self, value) -> list:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self.active:
            return [value]
        out = [None] * self.world
        _collective(dist.all_gather_object, out, value)
        return out

    def _device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else torch.device("cpu")


ONE_PROCESS = Ranks()
"""The run of a single process, without torchrun."""


def _collective(operation, *args, **kwargs) -> None:
    try:
        operation(*args, **kwargs)
    except (RuntimeError, dist.DistBackendError) as exc:  # a peer's socket closed, or it never answered
        log.debug("collective failed: %s", exc)
        raise RankLost("another process of this run ended; the last checkpoint in --out resumes the run") from None


def main_process() -> bool:
    """Whether this process is rank 0 (or the only one): what a command prints, it prints once."""
    return os.environ.get("RANK", "0") == "0"


def join() -> Ranks:
    """Join the process group torchrun describes in the environment; a single rank without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return ONE_PROCESS
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if not dist.is_initialized():
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend, timeout=timedelta(seconds=COLLECTIVE_TIMEOUT_S))
    return Ranks(dist.get_rank(), dist.get_world_size(), backend)


def leave(ranks: Ranks) -> None:
    """Leave the process group; the model's DistributedDataParallel wrapper must be dropped first."""
    if ranks.active and dist.is_initialized():
        # A wrapper left in a reference cycle would own the group and free it later, holding the
        # GIL as its gloo threads finish (a deadlock): collected now, the group's last owner is its
        # Python handle, which releases the GIL as it waits for them.
        gc.collect()
        dist.destroy_process_group()


def wrapped(model: torch.nn.Module, ranks: Ranks) -> torch.nn.Module:
    """``model`` as the training step calls it: in DistributedDataParallel across ranks (which starts
    every rank from rank 0's weights and averages gradients in the backward pass), else itself."""
    if not ranks.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device = next(model.parameters()).device
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def fingerprint(*tensors: torch.Tensor) -> str:
    """A short hash of tensors' values: equal on two ranks exactly when the tensors are."""
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
