r"""Data-parallel training on :mod:`torch.distributed` (DDP over interaction batches).

Processes are started by ``torchrun`` (``mmgraph train --nproc N`` calls
:func:`launch`) or by :func:`run_distributed`; :class:`~mmgraph.train.Trainer`
switches to data-parallel training by itself inside a process group
(``WORLD_SIZE > 1``). Every rank draws the same global batch and keeps its
slice (:func:`shard_batch`), weighted so that averaged gradients are those of
the global-batch mean; evaluation is sharded by users
(:class:`ShardedEvaluator`).

``docs/distributed.md`` documents the semantics: launching, which loss terms
a data-parallel step reproduces exactly (and which it does not, model by
model), random numbers, buffers, the every-parameter-gets-a-gradient rule,
evaluation and checkpoints.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from ..evaluation import Evaluator
from ..models.base import Batch

__all__ = ["DistributedContext", "init_distributed", "shard_batch", "ShardedEvaluator",
           "wrap_model", "all_reduce_sum", "launch", "run_distributed", "is_distributed_env"]


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in the process group.

    Attributes:
        rank: global rank, ``0 .. world_size - 1``.
        world_size: number of processes.
        local_rank: rank on this node (selects the GPU).
        backend: ``'gloo'`` or ``'nccl'``.
        device: this process's compute device (``cuda:LOCAL_RANK`` on GPUs).
    """
    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0

    @property
    def comm_device(self) -> torch.device:
        """Device of tensors passed to collectives (NCCL needs CUDA tensors)."""
        return self.device if self.backend == "nccl" else torch.device("cpu")


def is_distributed_env() -> bool:
    """Whether this process was started as one of several (``WORLD_SIZE > 1``) or
    already belongs to a process group of more than one process."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: str | torch.device = "cpu", backend: str | None = None,
                     timeout: timedelta | None = None) -> DistributedContext | None:
    """Join the process group ``torchrun`` prepared; ``None`` in a single-process run.

    If :func:`torch.distributed.init_process_group` was already called, that
    group is used; otherwise it is initialised from the ``env://`` variables
    (``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``) with
    ``backend`` (default: ``'nccl'`` for a CUDA ``device``, ``'gloo'`` else).

    ``device`` is the configured device: ``'cpu'`` stays ``'cpu'``; any CUDA
    device becomes ``cuda:LOCAL_RANK`` (one GPU per process), which is also
    made the current CUDA device.
    """
    if not is_distributed_env():
        return None
    if not dist.is_available():  # pragma: no cover - every standard torch build has it
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    device = torch.device(device)
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"distributed training runs on 'cpu' or 'cuda', got device {str(device)!r}")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {str(device)!r} requested but CUDA is not available")
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK={local_rank} but this node has only "
                               f"{torch.cuda.device_count()} GPU(s): start at most one process per GPU")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = backend or ("nccl" if device.type == "cuda" else "gloo")
        kw = {"timeout": timeout} if timeout is not None else {}
        if backend == "nccl":
            kw["device_id"] = device
        dist.init_process_group(backend=backend, init_method="env://", **kw)
    return DistributedContext(rank=dist.get_rank(), world_size=dist.get_world_size(),
                              local_rank=local_rank, backend=str(dist.get_backend()),
                              device=device)


def shard_batch(batch: Batch, rank: int, world_size: int) -> tuple[Batch, float]:
    r"""Rank ``rank``'s contiguous slice of a global batch and its loss weight.

    Rank ``r`` gets rows ``[floor(rB/W), floor((r+1)B/W))`` (sizes differ by at
    most one) and the weight :math:`w_r = W B_r / B`; with DDP's gradient
    averaging, :math:`\frac1W\sum_r w_r\nabla\bar\ell_r` is the gradient of
    the mean over the global batch. A rank whose slice is empty (``B < W``)
    gets the batch's first row with weight ``0`` so that it still takes part
    in the gradient all-reduce.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    b = int(batch.users.numel())
    lo, hi = (b * rank) // world_size, (b * (rank + 1)) // world_size
    weight = world_size * (hi - lo) / b if b > 0 else 0.0
    if hi == lo:
        lo, hi = 0, min(1, b)
    neg = None if batch.neg_items is None else batch.neg_items[lo:hi]
    return Batch(batch.users[lo:hi], batch.pos_items[lo:hi], neg), weight


def all_reduce_sum(t: Tensor, ctx: DistributedContext) -> Tensor:
    """Sum ``t`` over all ranks (a new tensor on ``t``'s device; identical on every rank)."""
    buf = t.detach().to(ctx.comm_device, copy=True)
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    return buf.to(t.device)


def wrap_model(model: torch.nn.Module, ctx: DistributedContext
               ) -> torch.nn.parallel.DistributedDataParallel:
    """``DistributedDataParallel`` around ``model`` (already on ``ctx.device``).

    Buffers are synced from rank 0 once, not before every forward
    (``forward_sync_buffers=False`` / ``broadcast_buffers=False``: the
    input-free forward keeps buffers equal on every rank), ``gradient_as_bucket_view=True`` (no second copy of the
    gradients), ``find_unused_parameters=False`` (see ``docs/distributed.md``).
    """
    import inspect
    ddp = torch.nn.parallel.DistributedDataParallel
    kw: dict[str, Any] = dict(gradient_as_bucket_view=True, find_unused_parameters=False)
    if "forward_sync_buffers" in inspect.signature(ddp.__init__).parameters:
        kw["forward_sync_buffers"] = False    # newer torch: buffers synced once, at init
    else:
        kw["broadcast_buffers"] = False
    if ctx.device.type == "cuda":
        kw.update(device_ids=[ctx.device.index], output_device=ctx.device.index)
    return ddp(model, **kw)


class ShardedEvaluator(Evaluator):
    r"""An :class:`~mmgraph.evaluation.Evaluator` whose users are split over ranks.

    Rank ``r`` of ``W`` ranks scores the users ``r, r + W, ...`` (strided, so
    that every rank gets a similar mix) of the split's sorted evaluated
    users; :meth:`evaluate` all-reduces the per-metric sums and the user
    count, so every rank returns the metrics of the whole split. It must be
    called on every rank (it is a collective).
    """

    def __init__(self, data, ks: Sequence[int] = (10, 20), metrics: Sequence[str] | None = None,
                 batch_size: int = 4096, *, ctx: DistributedContext):
        if metrics is None:
            super().__init__(data, ks, batch_size=batch_size)
        else:
            super().__init__(data, ks, metrics, batch_size)
        self.ctx = ctx

    @classmethod
    def from_evaluator(cls, evaluator: Evaluator, ctx: DistributedContext) -> "ShardedEvaluator":
        """A sharded view of an existing evaluator (shares its indices and caches)."""
        out = cls.__new__(cls)
        out.__dict__.update(evaluator.__dict__)
        out.ctx = ctx
        return out

    def _split(self, split: str, cold_start: bool) -> tuple[Tensor, Tensor, Tensor]:
        users, pos_len, keys = super()._split(split, cold_start)
        r, w = self.ctx.rank, self.ctx.world_size
        return users[r::w], pos_len[r::w], keys

    def num_eval_users(self, split: str = "valid", cold_start: bool = False) -> int:
        """Number of users evaluated on ``split`` over all ranks."""
        return int(super()._split(split, cold_start)[0].numel())

    def evaluate(self, score_fn: Callable[[Tensor], Tensor], split: str = "valid",
                 cold_start: bool = False, device: torch.device | str | None = None
                 ) -> dict[str, float]:
        n_local = int(self._split(split, cold_start)[0].numel())
        local = super().evaluate(score_fn, split=split, cold_start=cold_start, device=device)
        keys = list(local)
        # local values are means over this rank's users: back to sums, then reduce
        sums = torch.tensor([local[k] * n_local for k in keys] + [float(n_local)],
                            dtype=torch.float64)
        sums = all_reduce_sum(sums, self.ctx)
        n = float(sums[-1])
        if n == 0:
            return {k: 0.0 for k in keys}
        vals = (sums[:-1] / n).tolist()
        return dict(zip(keys, vals))


# ----------------------------------------------------------------- launching
def launch(argv: Sequence[str], nproc: int, module: str = "mmgraph.cli",
           extra_torchrun_args: Sequence[str] = ()) -> None:
    """Run ``python -m module *argv`` in ``nproc`` local processes via torchrun.

    Equivalent to ``torchrun --standalone --nproc-per-node nproc -m module
    *argv`` (rendezvous on a free localhost port). Raises
    :class:`torch.distributed.elastic.multiprocessing.errors.ChildFailedError`
    if a worker fails.
    """
    if nproc < 1:
        raise ValueError(f"--nproc must be >= 1, got {nproc}")
    from torch.distributed import run as torchrun
    args = ["--standalone", "--nnodes", "1", "--nproc-per-node", str(int(nproc)),
            *extra_torchrun_args, "-m", module, *argv]
    torchrun.main(args)


def _spawn_entry(local_rank: int, fn: Callable, args: tuple, world_size: int, tmp: str,
                 threads: int, backend: str) -> None:
    torch.set_num_threads(threads)
    os.environ.update(RANK=str(local_rank), LOCAL_RANK=str(local_rank),
                      WORLD_SIZE=str(world_size), LOCAL_WORLD_SIZE=str(world_size))
    # rendezvous through a file, not a TCP port: nothing to collide with
    kw = {"device_id": torch.device("cuda", local_rank)} if backend == "nccl" else {}
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend, init_method="file://" + os.path.join(tmp, "rendezvous"),
                            rank=local_rank, world_size=world_size, **kw)
    try:
        result = fn(*args)
        torch.save(result, os.path.join(tmp, f"rank{local_rank}.pt"))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_distributed(fn: Callable, nproc: int, *args, threads_per_process: int | None = None,
                    backend: str = "gloo") -> list[Any]:
    """Call ``fn(*args)`` in ``nproc`` fresh local processes forming one group.

    Each process joins a process group of ``backend`` (``'gloo'``; ``'nccl'``
    for one GPU per process) through a file rendezvous in a temporary folder
    and gets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in its environment,
    so a :class:`~mmgraph.train.Trainer` built inside ``fn`` trains
    data-parallel.
    ``fn`` must be importable (a module-level function) and its return value
    picklable. Returns the results ordered by rank; raises
    :class:`torch.multiprocessing.ProcessRaisedException` if a worker fails.

    ``threads_per_process`` sets ``torch.set_num_threads`` in the workers
    (default: cores / ``nproc``, at least 1).
    """
    import tempfile

    import torch.multiprocessing as mp
    if nproc < 1:
        raise ValueError(f"nproc must be >= 1, got {nproc}")
    if threads_per_process is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover
            cores = os.cpu_count() or 1
        threads_per_process = max(1, cores // nproc)
    with tempfile.TemporaryDirectory(prefix="mmgraph-dist-") as tmp:
        mp.start_processes(_spawn_entry, args=(fn, args, nproc, tmp, int(threads_per_process),
                                               backend),
                           nprocs=nproc, join=True, start_method="spawn")
        return [torch.load(os.path.join(tmp, f"rank{r}.pt"), weights_only=False)
                for r in range(nproc)]
