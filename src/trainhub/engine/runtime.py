"""Where training runs: device, data-parallel wrapping, process group, seeding.

A :class:`Runtime` is the one object that knows about devices and processes. Under ``torchrun``
(``WORLD_SIZE > 1`` in the environment) it joins the process group (with a timeout, so a lost
peer ends the job instead of hanging it), wraps the model in DistributedDataParallel, shards
map-style loaders across ranks (:mod:`trainhub.engine.sharding`) and offers the few collectives
the loop needs (gather, broadcast, barrier). Otherwise it is a single process on one device,
optionally with ``nn.DataParallel`` over several GPUs (Torch-RecHub's ``gpus=[...]``: only with two or
more ids and a CUDA ``device``; otherwise the model trains on ``device``), and every
collective is a no-op, so single-process code paths are unchanged.
"""

from __future__ import annotations

import logging
import operator
import os
import random
import weakref
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["Runtime", "seed_everything", "was_seeded", "unwrap_model", "move_to_device", "resolve_device", "is_rowwise",
           "dist_timeout", "forward_through", "all_gather_rows", "all_reduce_mean_", "averaged_over_ranks"]

log = logging.getLogger(__name__)


_SEEDED = False


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU); DataLoader workers follow.

    Call it before building the model: its initial weights are drawn when it is built. Loader
    workers need nothing more: each DataLoader draws its workers' base seed from torch's
    generator, and every worker seeds Python, NumPy and torch from it.

    Example:
        >>> import trainhub
        >>> trainhub.seed_everything(0)
        >>> model = DeepFM(...)          # the same initial weights on every run
    """
    global _SEEDED
    try:
        seed = operator.index(seed)
    except TypeError:
        raise TypeError(f"seed must be an integer, got {seed!r}") from None
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # every CUDA device too
    _SEEDED = True


def was_seeded() -> bool:
    """Whether torch's global generator was seeded in this process (by :func:`seed_everything`,
    or ``torch.manual_seed`` with a seed below 2**32: an unseeded process starts from a random
    64-bit seed)."""
    return _SEEDED or torch.initial_seed() < 2**32


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare model inside any DataParallel / DistributedDataParallel wrapper."""
    while isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    return model


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) batch of dicts, lists and tuples to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [move_to_device(v, device) for v in batch]
        return type(batch)(moved) if not hasattr(batch, "_fields") else type(batch)(*moved)
    return batch


def resolve_device(device: str | torch.device) -> torch.device:
    """Parse ``"cpu"``, ``"cuda"``, ``"cuda:1"``; fail clearly when the device is absent."""
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {str(device)!r} requested but CUDA is not available on this machine")
        index = dev.index or 0
        if index >= torch.cuda.device_count():
            raise RuntimeError(
                f"device {str(device)!r} requested but only {torch.cuda.device_count()} GPU(s) are visible"
            )
    return dev


def is_rowwise(param: torch.Tensor) -> bool:
    """True for tables updated by trainhub's row-wise optimizer, which syncs their gradients itself."""
    return bool(getattr(param, "_trainhub_rowwise", False))


def _dist_active() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def dist_timeout() -> timedelta:
    """How long a collective may wait for a peer: ``TRAINHUB_DIST_TIMEOUT`` seconds (default 1800)."""
    raw = os.environ.get("TRAINHUB_DIST_TIMEOUT", "1800")
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"TRAINHUB_DIST_TIMEOUT must be a number of seconds, got {raw!r}") from None
    if seconds <= 0:
        raise ValueError(f"TRAINHUB_DIST_TIMEOUT must be positive, got {raw!r}")
    return timedelta(seconds=seconds)


def forward_through(model: nn.Module, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(bare_model, *args)``, run inside DistributedDataParallel's forward when ``model`` is one.

    Methods other than ``forward`` (e.g. ``user_tower`` / ``item_tower``) bypass DDP, so their
    gradients would never be averaged; routing them through the wrapper's forward lets DDP prepare
    the reduction as for an ordinary forward. Without DDP this is a plain call on the bare model.
    """
    bare = unwrap_model(model)
    if not isinstance(model, nn.parallel.DistributedDataParallel):
        return fn(bare, *args)
    bare.forward = lambda *a: fn(bare, *a)  # instance attribute: nn.Module.__call__ finds it first
    try:
        return model(*args)
    finally:
        del bare.forward


def all_gather_rows(tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Concatenate every rank's ``tensor`` along dim 0 (rank order), keeping the autograd graph.

    Returns ``(gathered, offset)`` where ``offset`` is where this rank's rows start. Ranks may hold
    different numbers of rows (a short last batch): rows are padded for the collective and
    dropped again. The backward pass sums every rank's gradient into each rank's own rows, so a
    loss averaged over ranks by DDP gets the gradient of the loss over the combined rows.
    Single process: ``(tensor, 0)``.
    """
    if not _dist_active():
        return tensor, 0
    import torch.distributed as dist

    rank, world = dist.get_rank(), dist.get_world_size()
    sizes = [torch.zeros(1, dtype=torch.long, device=tensor.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([tensor.shape[0]], dtype=torch.long, device=tensor.device))
    counts = [int(s) for s in sizes]
    return _GatherRows.apply(tensor, counts, rank), sum(counts[:rank])


class _GatherRows(torch.autograd.Function):
    """All-gather along dim 0 (rows per rank in ``counts``); backward sums every rank's gradient."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, counts: list[int], rank: int) -> torch.Tensor:
        import torch.distributed as dist

        ctx.counts, ctx.rank = counts, rank
        longest = max(counts)
        padded = tensor.contiguous()
        if tensor.shape[0] < longest:  # collectives need equal shapes
            padded = torch.cat([padded, padded.new_zeros((longest - tensor.shape[0], *tensor.shape[1:]))])
        parts = [torch.empty_like(padded) for _ in counts]
        dist.all_gather(parts, padded)
        return torch.cat([p[:n] for p, n in zip(parts, counts)], dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        import torch.distributed as dist

        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # each rank's loss reaches every rank's rows
        start = sum(ctx.counts[:ctx.rank])
        return grad[start:start + ctx.counts[ctx.rank]], None, None


def all_reduce_mean_(tensors: Sequence[torch.Tensor]) -> None:
    """Average ``tensors`` over ranks, in place, in one collective (no-op in a single process)."""
    tensors = [t for t in tensors if t is not None]
    if not tensors or not _dist_active():
        return
    import torch.distributed as dist

    flat = torch.cat([t.detach().reshape(-1).to(torch.float64) for t in tensors])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset:offset + n].view_as(t).to(t.dtype))
        offset += n


def averaged_over_ranks(tensors: Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
    """Mean over ranks of each tensor, as new tensors; the inputs are left untouched.

    Dense tensors go in one all-reduce; sparse COO tensors (row-wise tables' gradients) are
    gathered as (indices, values) and summed. Single process: the inputs themselves.
    """
    out = list(tensors)
    if not _dist_active():
        return out
    import torch.distributed as dist

    dense = [i for i, t in enumerate(out) if t is not None and not t.is_sparse]
    copies = [out[i].detach().clone() for i in dense]
    all_reduce_mean_(copies)
    for i, c in zip(dense, copies):
        out[i] = c
    world = dist.get_world_size()
    for i, t in enumerate(out):
        if t is not None and t.is_sparse:
            t = t.detach().coalesce()
            parts: list[Any] = [None] * world
            dist.all_gather_object(parts, (t.indices().cpu(), t.values().cpu()))
            indices = torch.cat([p[0] for p in parts], dim=1)
            values = torch.cat([p[1] for p in parts]) / world
            out[i] = torch.sparse_coo_tensor(indices, values, t.shape).coalesce().to(t.device)
    return out


@dataclass
class Runtime:
    """Device and process placement.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:0"``, ...; under torchrun ``"cuda"`` becomes
            ``cuda:<LOCAL_RANK>`` with the nccl backend, the CPU uses gloo.
        gpus: GPU ids for ``nn.DataParallel``, as in Torch-RecHub: with two or more ids and a CUDA
            ``device`` (the first id) the model is wrapped; with one id, or on a CPU ``device``, it
            trains on ``device`` alone. Ignored under torchrun.
        seed: when given, everything is seeded at construction (offset by rank under torchrun).
        find_unused_parameters: passed to DistributedDataParallel (for models with parameters
            that some steps do not use).

    The process group's timeout is ``TRAINHUB_DIST_TIMEOUT`` seconds (default 1800): a rank that
    waits longer for a lost peer raises instead of hanging.

    Example:
        >>> rt = Runtime("cpu", seed=0)
        >>> model = rt.setup_model(model)
        >>> train_dl = rt.distribute_loader(train_dl, train=True)
    """

    device: str | torch.device = "cpu"
    gpus: Sequence[int] | None = None
    seed: int | None = None
    find_unused_parameters: bool = False
    rank: int = field(default=0, init=False)
    world_size: int = field(default=1, init=False)

    def __post_init__(self) -> None:
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self._sharded: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        if self.world_size > 1:
            self._init_distributed()
        self.device = resolve_device(self.device)
        if not self.is_distributed and self.gpus:
            self._check_gpus()
        if self.seed is not None:
            self.seed_process(self.seed)

    def seed_process(self, seed: int) -> None:
        """Seed this process with ``seed + rank``: each rank draws its own dropout and sampling
        streams, and a single process is seeded with ``seed`` as given."""
        seed_everything(seed + self.rank)

    def _check_gpus(self) -> None:
        """Torch-RecHub's rule: ``device`` says where the model trains; ``gpus`` with more than one id
        adds ``nn.DataParallel`` over them (then ``device`` must be the first of them)."""
        gpus = list(self.gpus or [])
        if self.device.type != "cuda":
            if len(gpus) > 1:
                log.warning("gpus=%s ignored: device is %r; pass device='cuda:%d' to train on them with "
                            "nn.DataParallel", gpus, str(self.device), gpus[0])
            return
        if len(gpus) < 2:
            return  # one id: the model trains on ``device``, as in Torch-RecHub
        for g in gpus:
            resolve_device(f"cuda:{g}")
        if (self.device.index or 0) != gpus[0]:
            raise ValueError(f"gpus={gpus} with device={str(self.device)!r}: nn.DataParallel keeps the model on "
                             f"the first of gpus; pass device='cuda:{gpus[0]}' or put cuda:{self.device.index or 0} "
                             "first in gpus")

    @property
    def data_parallel(self) -> bool:
        """True when the model is wrapped in ``nn.DataParallel`` (``gpus`` with 2+ ids on a CUDA device)."""
        return not self.is_distributed and self.device.type == "cuda" and len(self.gpus or []) > 1

    def _init_distributed(self) -> None:
        import torch.distributed as dist

        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.device(self.device).type == "cuda":
            self.device = torch.device(f"cuda:{local_rank}")
            torch.cuda.set_device(self.device)
            backend = "nccl"
        else:
            backend = "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend, timeout=dist_timeout())
        log.info("joined process group: rank %d of %d (%s)", self.rank, self.world_size, backend)

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True in the process that writes files and logs (rank 0)."""
        return self.rank == 0

    # -- model and optimizer ----------------------------------------------------------------------
    def setup_model(self, model: nn.Module) -> nn.Module:
        """Move the model to the device and wrap it for data parallelism when configured.

        Under torchrun, parameters marked ``_trainhub_rowwise`` (fused embedding tables with
        sparse gradients, updated by trainhub's row-wise optimizer, which gathers their gradients
        itself) are kept out of DDP's gradient reduction; they are broadcast from rank 0 here, as
        DDP does for the others, so every rank starts from the same weights.
        """
        model = model.to(self.device)
        if self.is_distributed:
            ignored = [name for name, p in model.named_parameters() if is_rowwise(p)]
            if ignored:
                # DDP matches "<module>.<param>"; a parameter of the root module is ".<param>" there.
                ignored += ["." + name for name in ignored if "." not in name]
                nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, ignored)
                self._broadcast([p.data for p in model.parameters() if is_rowwise(p)])
            ids = [self.device.index] if self.device.type == "cuda" else None
            return nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                                       find_unused_parameters=self.find_unused_parameters)
        if self.data_parallel:
            return nn.DataParallel(model, device_ids=list(self.gpus))
        return model

    def setup_optimizer(self, optimizer: torch.optim.Optimizer, model: nn.Module) -> torch.optim.Optimizer:
        """Make the optimizer's parameters that DDP does not reduce (e.g. uncertainty weights held
        by a loss-weighting strategy) agree across ranks: broadcast them from rank 0 once and
        average their gradients just before every step. Row-wise tables are left to their own
        optimizer. Idempotent; a no-op in a single process."""
        if not self.is_distributed or getattr(optimizer, "_trainhub_synced", False):
            return optimizer
        managed = {id(p) for p in unwrap_model(model).parameters()}
        extra = [p for group in optimizer.param_groups for p in group["params"]
                 if id(p) not in managed and not is_rowwise(p)]
        optimizer._trainhub_synced = True  # type: ignore[attr-defined]
        if not extra:
            return optimizer
        self._broadcast([p.data for p in extra])

        def average_grads(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            # Which parameters have a gradient follows from the graph, the same on every rank.
            all_reduce_mean_([p.grad for p in extra if p.grad is not None])

        optimizer.register_step_pre_hook(average_grads)
        return optimizer

    def eval_model(self, model: nn.Module) -> nn.Module:
        """The module to evaluate or predict with: the bare model under DDP (its forward would run
        collectives, and ranks may hold different numbers of evaluation batches), with rank 0's
        buffers (e.g. BatchNorm running statistics) so every rank scores with the same model."""
        if not self.is_distributed:
            return model
        bare = unwrap_model(model)
        self._broadcast([b for b in bare.buffers()])
        return bare if isinstance(model, nn.parallel.DistributedDataParallel) else model

    def broadcast_module(self, model: nn.Module) -> None:
        """Copy rank 0's parameters and buffers to every rank (after rank 0 loaded a checkpoint)."""
        if self.is_distributed:
            bare = unwrap_model(model)
            self._broadcast([p.data for p in bare.parameters()] + list(bare.buffers()))

    # -- data ---------------------------------------------------------------------------------------
    def distribute_loader(self, loader: Any, train: bool) -> Any:
        """This rank's share of ``loader`` (see :mod:`trainhub.engine.sharding`); ``loader`` itself
        in a single process, for iterables other than DataLoaders and for iterable datasets."""
        return self.shard(loader, train)[0]

    def shard(self, loader: Any, train: bool) -> tuple[Any, bool]:
        """``(this rank's loader, sharded?)``; ``sharded`` is False when every rank reads the whole
        loader (a single process, or a sampler that cannot be split)."""
        if not self.is_distributed or loader is None:
            return loader, False
        from trainhub.engine.sharding import shard_loader

        key = (train,)
        try:
            cached = self._sharded.get(loader, {})
        except TypeError:  # not weak-referenceable
            cached = {}
        if key in cached:
            return cached[key]
        result = shard_loader(loader, self.rank, self.world_size, train, self._common_seed)
        try:
            self._sharded.setdefault(loader, {})[key] = result
        except TypeError:
            pass
        return result

    def _common_seed(self, candidate: int | None) -> int:
        if candidate is None:
            candidate = self.seed if self.seed is not None else int(torch.randint(0, 2**62, ()).item())
        return int(self.broadcast_object(int(candidate)))

    # -- collectives (no-ops in a single process) ----------------------------------------------------
    def _broadcast(self, tensors: Sequence[torch.Tensor]) -> None:
        if not self.is_distributed:
            return
        import torch.distributed as dist

        for t in tensors:
            dist.broadcast(t, src=0)

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` in a single process."""
        if not self.is_distributed:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.is_distributed:
            return obj
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def mean_over_ranks(self, values: dict[str, float]) -> dict[str, float]:
        """Per-key mean over the ranks that report the key (training logs of equal-sized shards)."""
        if not self.is_distributed:
            return values
        gathered = self.all_gather_object(values)
        keys = list(dict.fromkeys(k for d in gathered for k in d))
        return {k: sum(d[k] for d in gathered if k in d) / sum(1 for d in gathered if k in d) for k in keys}

    def to_device(self, batch: Any) -> Any:
        return move_to_device(batch, self.device)

    def barrier(self) -> None:
        if self.is_distributed:
            import torch.distributed as dist

            dist.barrier()
