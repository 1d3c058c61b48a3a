"""Vector quantizers for semantic IDs: one codebook (:class:`VectorQuantizer`) and a stack of them
applied to successive residuals (:class:`ResidualVectorQuantizer`), as in RQ-VAE (Lee et al. 2022)
and TIGER (Rajput et al. 2023).

Torch-RecHub 0.9.0 path: ``torch_rechub.models.generative.rqvae`` (``VectorQuantizer``,
``ResidualVectorQuantizer``, ``kmeans``, ``sinkhorn_algorithm``). Behaviour kept: codebooks start
uniform in ``[-1/n_e, 1/n_e]`` or, with ``kmeans_init``, from k-means over the first training batch;
the loss is ``codebook + beta * commitment`` (both MSE); gradients pass the quantizer straight
through; with a positive Sinkhorn epsilon the assignment is the balanced (Sinkhorn-Knopp) one over
min-max-scaled distances. Differences: Sinkhorn runs in the log domain (no overflow for small
epsilons) and a codebook loaded from a state dict counts as initialised (upstream re-ran k-means
on the first batch after loading).
"""

from __future__ import annotations

import logging
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VectorQuantizer", "ResidualVectorQuantizer", "kmeans", "sinkhorn_algorithm", "codebook_stats"]

log = logging.getLogger(__name__)


def kmeans(samples: torch.Tensor, num_clusters: int, num_iters: int = 10) -> torch.Tensor:
    """Cluster centres ``[num_clusters, D]`` of ``samples [N, D]`` by scikit-learn's k-means.

    Runs on the CPU; the centres come back on the samples' device and dtype. The random state is
    drawn from torch's generator, so ``trainhub.seed_everything`` makes the result reproducible.

    Raises:
        ValueError: fewer samples than clusters (k-means cannot place every centre).
    """
    num_samples = samples.shape[0]
    if num_samples < num_clusters:
        raise ValueError(
            f"k-means initialisation of a codebook with {num_clusters} entries needs at least {num_clusters} "
            f"vectors, but the first training batch has {num_samples}: raise the batch size to >= {num_clusters} "
            "or pass kmeans_init=False")
    from sklearn.cluster import KMeans  # scikit-learn is a core dependency, imported only when used

    data = samples.detach().to("cpu", torch.float64).numpy()
    seed = int(torch.randint(0, 2**31 - 1, ()).item())
    model = KMeans(n_clusters=num_clusters, max_iter=num_iters, n_init=1, random_state=seed).fit(data)
    return torch.as_tensor(model.cluster_centers_, dtype=samples.dtype, device=samples.device)


@torch.no_grad()
def sinkhorn_algorithm(distances: torch.Tensor, epsilon: float, sinkhorn_iterations: int) -> torch.Tensor:
    """Balanced soft assignment ``Q [B, K]`` of ``B`` samples to ``K`` codes (Sinkhorn-Knopp).

    ``Q`` approaches the maximiser of ``-<Q, distances> / epsilon + entropy(Q)`` subject to every
    sample carrying weight 1 and every code receiving ``B / K``; ``argmax`` over a row is the
    sample's code. Each iteration scales the rows, then the columns (upstream's order, so a run
    that has not converged gives upstream's codes too): code totals are exactly ``B / K``, sample
    totals about 1. Computed on log-potentials, since ``exp(-d / epsilon)`` under- or overflows
    for the small epsilons RQ-VAE uses (0.003 on distances scaled to [-1, 1]).
    """
    log_q = -distances.double() / epsilon  # [B, K]
    num_samples, num_codes = log_q.shape
    log_q = log_q - torch.logsumexp(log_q.reshape(-1), dim=0)
    for _ in range(sinkhorn_iterations):
        # each sample's total -> 1/B, then each code's total -> 1/K
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - math.log(num_samples)
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - math.log(num_codes)
    return torch.exp(log_q) * num_samples


def _scaled_distances(distances: torch.Tensor) -> torch.Tensor:
    """Distances min-max scaled to about [-1, 1], so one epsilon suits any embedding scale."""
    high, low = distances.max(), distances.min()
    middle = (high + low) / 2
    return (distances - middle) / (high - middle + 1e-5)


class VectorQuantizer(nn.Module):
    """One codebook of ``n_e`` vectors of width ``e_dim``.

    Args:
        n_e: codebook size.
        e_dim: width of the vectors quantized.
        beta: weight of the commitment loss (pulls inputs towards their codes).
        kmeans_init: initialise the codebook by k-means over the first training batch (which must
            hold at least ``n_e`` vectors); until then the codebook is zero.
        kmeans_iters: k-means iterations.
        sk_epsilon: Sinkhorn entropy weight; ``<= 0`` assigns each vector its nearest code.
        sk_iters: Sinkhorn iterations.

    Example:
        >>> vq = VectorQuantizer(n_e=16, e_dim=8)
        >>> x_q, loss, indices = vq(torch.randn(32, 8))  # [32, 8], scalar, [32]
    """

    def __init__(self, n_e: int, e_dim: int, beta: float = 0.25, kmeans_init: bool = False, kmeans_iters: int = 10,
                 sk_epsilon: float = 0.003, sk_iters: int = 100):
        super().__init__()
        if n_e < 1 or e_dim < 1:
            raise ValueError(f"n_e and e_dim must be positive, got n_e={n_e}, e_dim={e_dim}")
        self.n_e, self.e_dim, self.beta = n_e, e_dim, beta
        self.kmeans_init, self.kmeans_iters = kmeans_init, kmeans_iters
        self.sk_epsilon, self.sk_iters = sk_epsilon, sk_iters
        self.embedding = nn.Embedding(n_e, e_dim)
        if kmeans_init:
            self.initted = False
            nn.init.zeros_(self.embedding.weight)
        else:
            self.initted = True
            nn.init.uniform_(self.embedding.weight, -1.0 / n_e, 1.0 / n_e)
        # Loaded weights are a trained (or k-means) codebook: the first batch must not overwrite them.
        self.register_load_state_dict_post_hook(_mark_initialised)

    def get_codebook(self) -> torch.Tensor:
        """The codebook ``[n_e, e_dim]``."""
        return self.embedding.weight

    def get_codebook_entry(self, indices: torch.Tensor, shape: Sequence[int] | None = None) -> torch.Tensor:
        """Code vectors of ``indices`` (``[..., e_dim]``, or reshaped to ``shape``)."""
        z_q = self.embedding(indices)
        return z_q.view(*shape) if shape is not None else z_q

    @torch.no_grad()
    def init_emb(self, data: torch.Tensor) -> None:
        """Set the codebook to the k-means centres of ``data [N, e_dim]``.

        Under torchrun every rank clusters its own first batch at the same step; rank 0's centres
        are then broadcast, so the replicas start from one codebook."""
        self.embedding.weight.copy_(kmeans(data, self.n_e, self.kmeans_iters))
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.broadcast(self.embedding.weight.data, src=0)
        self.initted = True

    @staticmethod
    def center_distance_for_constraint(distances: torch.Tensor) -> torch.Tensor:
        """Distances ``[B, K]`` scaled to about [-1, 1] (upstream's name)."""
        return _scaled_distances(distances)

    def assign(self, latent: torch.Tensor, use_sk: bool = True) -> torch.Tensor:
        """Code index ``[N]`` of each row of ``latent [N, e_dim]``."""
        codebook = self.embedding.weight
        # squared L2 distances [N, n_e] without materialising [N, n_e, e_dim]
        distances = latent.pow(2).sum(1, keepdim=True) + codebook.pow(2).sum(1) - 2 * latent @ codebook.t()
        if not use_sk or self.sk_epsilon <= 0:
            return distances.argmin(dim=-1)
        q = sinkhorn_algorithm(_scaled_distances(distances.detach()), self.sk_epsilon, self.sk_iters)
        if not torch.isfinite(q).all():
            log.warning("Sinkhorn assignment gave non-finite values (epsilon=%g): nearest codes are used instead",
                        self.sk_epsilon)
            return distances.argmin(dim=-1)
        return q.argmax(dim=-1)

    def forward(self, x: torch.Tensor, use_sk: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantize ``x [..., e_dim]``.

        Returns:
            ``(x_q [..., e_dim], loss, indices [...])``: ``x_q`` carries ``x``'s gradient unchanged
            (straight-through estimator); ``loss = ||sg(x) - e||^2 + beta ||x - sg(e)||^2``.
        """
        latent = x.reshape(-1, self.e_dim)  # [N, e_dim]
        if not self.initted and self.training:
            self.init_emb(latent)
        indices = self.assign(latent, use_sk)  # [N]
        x_q = self.embedding(indices).view(x.shape)
        codebook_loss = F.mse_loss(x_q, x.detach())  # moves the codes
        commitment_loss = F.mse_loss(x_q.detach(), x)  # keeps the encoder near its codes
        loss = codebook_loss + self.beta * commitment_loss
        x_q = x + (x_q - x).detach()  # forward: the code; backward: identity to x
        return x_q, loss, indices.view(x.shape[:-1])

    def extra_repr(self) -> str:
        return f"n_e={self.n_e}, e_dim={self.e_dim}, beta={self.beta}, sk_epsilon={self.sk_epsilon}"


def _mark_initialised(module: nn.Module, incompatible_keys) -> None:
    module.initted = True


class ResidualVectorQuantizer(nn.Module):
    """Codebooks applied in turn, each to what the previous ones left (SoundStream's residual VQ).

    Args:
        n_e_list: codebook size of each level, e.g. ``[256, 256, 256]``.
        e_dim: width of the vectors quantized.
        sk_epsilons: Sinkhorn epsilon per level (0 = nearest code); None = 0 everywhere.
        beta / kmeans_init / kmeans_iters / sk_iters: as :class:`VectorQuantizer`.

    Example:
        >>> rq = ResidualVectorQuantizer([16, 16], e_dim=8, sk_epsilons=[0.0, 0.0])
        >>> x_q, loss, codes = rq(torch.randn(32, 8))  # [32, 8], mean loss, [32, 2]
    """

    def __init__(self, n_e_list: Sequence[int], e_dim: int, sk_epsilons: Sequence[float] | None = None,
                 beta: float = 0.25, kmeans_init: bool = False, kmeans_iters: int = 100, sk_iters: int = 100):
        super().__init__()
        n_e_list = list(n_e_list)
        sk_epsilons = [0.0] * len(n_e_list) if sk_epsilons is None else list(sk_epsilons)
        if not n_e_list:
            raise ValueError("n_e_list must name at least one codebook size")
        if len(sk_epsilons) != len(n_e_list):
            raise ValueError(f"sk_epsilons has {len(sk_epsilons)} values for {len(n_e_list)} codebooks "
                             f"(n_e_list={n_e_list}): give one per level")
        self.n_e_list, self.e_dim, self.num_quantizers = n_e_list, e_dim, len(n_e_list)
        self.beta, self.kmeans_init, self.kmeans_iters = beta, kmeans_init, kmeans_iters
        self.sk_epsilons, self.sk_iters = sk_epsilons, sk_iters
        self.vq_layers = nn.ModuleList(
            VectorQuantizer(n_e, e_dim, beta=beta, kmeans_init=kmeans_init, kmeans_iters=kmeans_iters,
                            sk_epsilon=eps, sk_iters=sk_iters)
            for n_e, eps in zip(n_e_list, sk_epsilons))

    def get_codebook(self) -> torch.Tensor:
        """Codebooks stacked ``[levels, n_e, e_dim]`` (all levels must have the same size)."""
        return torch.stack([vq.get_codebook() for vq in self.vq_layers])

    def forward(self, x: torch.Tensor, use_sk: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x_q [..., e_dim], mean loss over levels, indices [..., levels])``."""
        x_q = torch.zeros_like(x)
        residual = x
        losses, codes = [], []
        for quantizer in self.vq_layers:
            level_q, loss, indices = quantizer(residual, use_sk=use_sk)
            residual = residual - level_q
            x_q = x_q + level_q
            losses.append(loss)
            codes.append(indices)
        return x_q, torch.stack(losses).mean(), torch.stack(codes, dim=-1)


def codebook_stats(codes: torch.Tensor, codebook_sizes: Sequence[int]) -> dict[str, float]:
    """Quality of semantic IDs ``codes [N, levels]``.

    Returns:
        ``num_items``, ``unique_ids``, ``collision_rate`` (``1 - unique / N``), ``max_conflicts``
        (most items sharing one ID) and, per level ``i``, ``usage_i`` (fraction of the codebook
        used) and ``perplexity_i`` (``exp`` of the code distribution's entropy: the number of
        equally used codes it is worth).
    """
    codes = torch.as_tensor(codes).reshape(len(codes), -1).cpu()
    num_items = codes.shape[0]
    if num_items == 0:
        return {"num_items": 0.0, "unique_ids": 0.0, "collision_rate": float("nan"), "max_conflicts": 0.0}
    _, counts = torch.unique(codes, dim=0, return_counts=True)
    stats = {"num_items": float(num_items), "unique_ids": float(len(counts)),
             "collision_rate": 1.0 - len(counts) / num_items, "max_conflicts": float(counts.max())}
    for level, size in enumerate(codebook_sizes):
        freq = torch.bincount(codes[:, level], minlength=size).double() / num_items
        nonzero = freq[freq > 0]
        stats[f"usage_{level}"] = float((freq > 0).sum()) / size
        stats[f"perplexity_{level}"] = float(torch.exp(-(nonzero * nonzero.log()).sum()))
    return stats
