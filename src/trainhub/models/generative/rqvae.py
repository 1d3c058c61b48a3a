"""RQ-VAE: item embeddings -> short tuples of codebook indices (semantic IDs) for TIGER.

Torch-RecHub 0.9.0 path: ``torch_rechub.models.generative.rqvae.RQVAEModel``; same constructor,
``forward(x, use_sk=True) -> (recon, rq_loss, indices)``, ``compute_loss``, ``get_indices`` and
``generate_semantic_ids`` (Sinkhorn re-assignment of colliding items, up to 20 rounds).

Differences from upstream, on purpose:

* Encoder and decoder follow the RQ-VAE / LC-Rec layout: hidden blocks ``Linear -> [BatchNorm]
  -> ReLU -> Dropout`` with BatchNorm only when ``bn=True``, and a plain ``Linear`` last layer.
  Upstream's MLP put BatchNorm and ReLU after *every* layer whatever ``bn`` said, so its latent and
  its reconstruction were non-negative (it could not reconstruct an embedding's negative entries).
  Upstream state dicts therefore do not load into this model.
* ``num_emb_list=None`` means ``[256, 256, 256]``, ``layers=None`` means no hidden layer and
  ``sk_epsilons=None`` means no Sinkhorn (upstream raised on all three).
* ``generate_semantic_ids`` logs its numbers (``logging``), restores the Sinkhorn epsilons it
  changed, uses the model's device by default (upstream: ``"cuda"``), and can add TIGER's extra
  disambiguating level (``extra_level=True``) so every item gets a unique ID.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from trainhub.models.generative.quantizer import (
    ResidualVectorQuantizer,
    VectorQuantizer,
    codebook_stats,
    kmeans,
    sinkhorn_algorithm,
)
from trainhub.models.registry import register_model
from trainhub.nn.mlp import Dropout

__all__ = ["RQVAEModel", "VectorQuantizer", "ResidualVectorQuantizer", "kmeans", "sinkhorn_algorithm",
           "codebook_stats", "DEFAULT_PREFIX"]

log = logging.getLogger(__name__)

DEFAULT_PREFIX = ("<a_{}>", "<b_{}>", "<c_{}>", "<d_{}>", "<e_{}>")
DEFAULT_NUM_EMB = (256, 256, 256)
MAX_COLLISION_ROUNDS = 20  # upstream's bound on Sinkhorn re-assignment rounds
FALLBACK_SK_EPSILON = 0.003  # upstream's epsilon for the last level when it had none
_COLLAPSE_USAGE = 0.1  # a level using one code, or under this share of the codes it could use, has collapsed


def _coder(dims: Sequence[int], dropout: float, bn: bool) -> nn.Sequential:
    """``dims[0] -> ... -> dims[-1]``: hidden blocks Linear [-> BatchNorm] -> ReLU -> Dropout; last
    layer linear, so latents and reconstructions can take any sign."""
    layers: list[nn.Module] = []
    for i, (width_in, width_out) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(width_in, width_out))
        if i < len(dims) - 2:
            if bn:
                layers.append(nn.BatchNorm1d(width_out))
            layers += [nn.ReLU(), Dropout(dropout)]
    return nn.Sequential(*layers)


def _example():
    kwargs = dict(in_dim=16, num_emb_list=[8, 8], e_dim=4, layers=[12], sk_epsilons=[0.0, 0.003])
    from trainhub.models.toy import BATCH_SIZE

    return kwargs, {"embeddings": torch.randn(BATCH_SIZE, 16, generator=torch.Generator().manual_seed(0))}


@register_model("generative", _example)
class RQVAEModel(nn.Module):
    """Residual-quantized autoencoder over item embeddings; its codes are the items' semantic IDs.

    Args:
        in_dim: width of the item embeddings.
        num_emb_list: codebook size per level (default ``[256, 256, 256]``).
        e_dim: width of the latent and the codebook vectors.
        layers: hidden widths of the encoder (the decoder mirrors them); None = none.
        dropout_prob: dropout after each hidden block.
        bn: BatchNorm in each hidden block.
        loss_type: reconstruction loss, ``"mse"`` or ``"l1"``.
        quant_loss_weight: weight of the quantization loss in :meth:`compute_loss`.
        beta: commitment-loss weight of every codebook.
        kmeans_init: initialise each codebook by k-means over the first training batch (which must
            hold at least as many items as the largest codebook).
        kmeans_iters: k-means iterations.
        sk_epsilons: Sinkhorn epsilon per level (balanced assignment while training); None or 0 =
            nearest code.
        sk_iters: Sinkhorn iterations.

    Example:
        >>> model = RQVAEModel(in_dim=384, num_emb_list=[64, 64, 64], e_dim=32, layers=[256, 128])
        >>> recon, rq_loss, codes = model(item_vectors)          # [N, 384], scalar, [N, 3]
        >>> loss, recon_loss = model.compute_loss(recon, rq_loss, xs=item_vectors)
        >>> ids = model.generate_semantic_ids(EmbDataset("items.npy"), loader)  # {0: ["<a_3>", ...], ...}
    """

    def __init__(self, in_dim: int = 768, num_emb_list: Sequence[int] | None = None, e_dim: int = 64,
                 layers: Sequence[int] | None = None, dropout_prob: float = 0.0, bn: bool = False,
                 loss_type: str = "mse", quant_loss_weight: float = 1.0, beta: float = 0.25,
                 kmeans_init: bool = False, kmeans_iters: int = 100, sk_epsilons: Sequence[float] | None = None,
                 sk_iters: int = 100):
        super().__init__()
        if loss_type not in ("mse", "l1"):
            raise ValueError(f"loss_type must be 'mse' or 'l1', got {loss_type!r}")
        self.in_dim, self.e_dim = in_dim, e_dim
        self.num_emb_list = list(DEFAULT_NUM_EMB if num_emb_list is None else num_emb_list)
        self.layers = list(layers or [])
        self.dropout_prob, self.bn, self.loss_type = dropout_prob, bn, loss_type
        self.quant_loss_weight, self.beta = quant_loss_weight, beta
        self.kmeans_init, self.kmeans_iters, self.sk_iters = kmeans_init, kmeans_iters, sk_iters
        self.sk_epsilons = [0.0] * len(self.num_emb_list) if sk_epsilons is None else list(sk_epsilons)
        self.encode_layer_dims = [in_dim, *self.layers, e_dim]
        self.decode_layer_dims = self.encode_layer_dims[::-1]
        self.encoder = _coder(self.encode_layer_dims, dropout_prob, bn)
        self.rq = ResidualVectorQuantizer(self.num_emb_list, e_dim, sk_epsilons=self.sk_epsilons, beta=beta,
                                          kmeans_init=kmeans_init, kmeans_iters=kmeans_iters, sk_iters=sk_iters)
        self.decoder = _coder(self.decode_layer_dims, dropout_prob, bn)

    @property
    def num_levels(self) -> int:
        return len(self.num_emb_list)

    def _input(self, x: Any) -> torch.Tensor:
        if isinstance(x, Mapping):  # the registry's example batches are dicts
            x = x["embeddings"]
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"RQVAEModel expects item embeddings [N, {self.in_dim}], got {tuple(x.shape)}")
        return x

    def forward(self, x: torch.Tensor, use_sk: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode, quantize, decode ``x [B, in_dim]`` (or ``{"embeddings": x}``).

        Returns:
            ``(recon [B, in_dim], rq_loss scalar, indices [B, levels] int64)``.
        """
        x = self._input(x)
        latent = self.encoder(x)  # [B, e_dim]
        x_q, rq_loss, indices = self.rq(latent, use_sk=use_sk)
        return self.decoder(x_q), rq_loss, indices

    @torch.no_grad()
    def get_indices(self, xs: torch.Tensor, use_sk: bool = False) -> torch.Tensor:
        """Semantic codes ``[B, levels]`` of ``xs [B, in_dim]`` (nearest codes unless ``use_sk``)."""
        _, _, indices = self.rq(self.encoder(self._input(xs)), use_sk=use_sk)
        return indices

    def compute_loss(self, out: torch.Tensor, quant_loss: torch.Tensor,
                     xs: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(recon_loss + quant_loss_weight * quant_loss, recon_loss)`` for reconstruction ``out`` of ``xs``."""
        if xs is None:
            raise ValueError("compute_loss needs xs, the inputs that out reconstructs")
        xs = self._input(xs)
        recon = F.mse_loss(out, xs) if self.loss_type == "mse" else F.l1_loss(out, xs)
        return recon + self.quant_loss_weight * quant_loss, recon

    # -- semantic IDs ----------------------------------------------------------------------------
    @torch.no_grad()
    def generate_semantic_ids(self, data: Any, data_loader: Iterable | None = None,
                              prefix: Sequence[str] = DEFAULT_PREFIX, use_sk: bool = False,
                              device: str | torch.device | None = None, *,
                              extra_level: bool = False) -> dict[int, list[str]]:
        """Semantic ID tokens of every item, with colliding items re-assigned.

        Items are coded in ``data``'s order (row ``i`` -> key ``i``). Items that share an ID are
        re-coded as a group with the balanced Sinkhorn assignment at the last level (the other
        levels keep their nearest codes), for up to 20 rounds, as upstream. The numbers are logged:
        unique IDs / items and the collision rate before and after, the most items sharing one
        ID, and each level's codebook usage and perplexity (a warning when a level has collapsed).

        Args:
            data: the item embeddings ``[N, in_dim]``: an :class:`~trainhub.data.EmbDataset`, a
                tensor or an array; colliding rows are read from it.
            data_loader: batches of ``data`` in order (``shuffle=False``); None = batches of 1024
                rows. A shuffling loader is an error, since row order names the items.
            prefix: one format string per level, e.g. ``"<a_{}>"``; one more when ``extra_level``.
            use_sk: kept for upstream's signature; the first pass always takes nearest codes and
                the re-assignment always uses Sinkhorn, as upstream.
            device: where to compute (default: the model's device).
            extra_level: append a level that numbers the items still sharing an ID (0, 1, ...;
                0 for every unique item), as in the TIGER paper, so every ID is unique.

        Returns:
            ``{item_index: [token, ...]}``, e.g. ``{0: ["<a_3>", "<b_17>", "<c_5>"], ...}``.
        """
        del use_sk  # see the docstring: the passes are fixed, as upstream
        levels = self.num_levels
        if len(prefix) < levels + int(extra_level):
            raise ValueError(f"prefix has {len(prefix)} formats but {levels + int(extra_level)} levels need one "
                             f"each (num_emb_list={self.num_emb_list}, extra_level={extra_level})")
        device = torch.device(device) if device is not None else next(self.parameters()).device
        was_training = self.training
        self.eval()
        try:
            codes = self._nearest_codes(data, data_loader, device)  # [N, levels]
            stats_before = codebook_stats(codes, self.num_emb_list)
            rounds = self._resolve_collisions(data, codes, device)
        finally:
            self.train(was_training)
        stats = codebook_stats(codes, self.num_emb_list)
        self._report(stats_before, stats, rounds)
        if extra_level:
            codes = torch.cat([codes, _disambiguator(codes)], dim=1)
        return {item: [prefix[level].format(int(c)) for level, c in enumerate(row)]
                for item, row in enumerate(codes.tolist())}

    def _nearest_codes(self, data: Any, data_loader: Iterable | None, device: torch.device) -> torch.Tensor:
        if data_loader is not None and _shuffles(data_loader):
            raise ValueError("data_loader shuffles its rows, so codes would be given to the wrong items: pass a "
                             "loader with shuffle=False (or data_loader=None)")
        batches = data_loader if data_loader is not None else _row_batches(data, 1024)
        parts = [self.get_indices(_as_batch(batch).to(device), use_sk=False).cpu() for batch in batches]
        codes = torch.cat(parts) if parts else torch.empty(0, self.num_levels, dtype=torch.long)
        if len(codes) != len(data):
            raise ValueError(f"data_loader gave {len(codes)} rows but data has {len(data)} items: the loader must "
                             "cover data once, in order")
        return codes

    def _resolve_collisions(self, data: Any, codes: torch.Tensor, device: torch.device) -> int:
        """Re-code colliding groups in place; returns the rounds used."""
        quantizers = list(self.rq.vq_layers)
        saved = [vq.sk_epsilon for vq in quantizers]
        for vq in quantizers[:-1]:
            vq.sk_epsilon = 0.0  # upper levels keep their nearest codes
        if quantizers[-1].sk_epsilon <= 0:
            quantizers[-1].sk_epsilon = FALLBACK_SK_EPSILON
        try:
            for round_ in range(MAX_COLLISION_ROUNDS):
                groups = _collision_groups(codes)
                if not groups:
                    return round_
                log.debug("collision round %d: %d groups, %d items", round_, len(groups), sum(map(len, groups)))
                for group in groups:
                    rows = _rows(data, group).to(device)
                    codes[group] = self.get_indices(rows, use_sk=True).cpu()
            return MAX_COLLISION_ROUNDS
        finally:
            for vq, eps in zip(quantizers, saved):
                vq.sk_epsilon = eps

    def _report(self, before: dict[str, float], after: dict[str, float], rounds: int) -> None:
        n = int(after["num_items"])
        log.info("semantic IDs: %d unique / %d items; collision rate %.4f before re-assignment, %.4f after %d "
                 "round(s); at most %d items share one ID", int(after["unique_ids"]), n, before["collision_rate"],
                 after["collision_rate"], rounds, int(after["max_conflicts"]))
        for level, size in enumerate(self.num_emb_list):
            usage, perplexity = after[f"usage_{level}"], after[f"perplexity_{level}"]
            log.info("level %d: %d of %d codes used (%.1f%%), perplexity %.1f", level, round(usage * size), size,
                     100 * usage, perplexity)
            used, possible = round(usage * size), min(size, n)
            if possible > 1 and used < max(2.0, _COLLAPSE_USAGE * possible):
                log.warning("codebook level %d has collapsed: %d of %d codes used by %d items (perplexity %.1f); "
                            "try kmeans_init=True, a Sinkhorn epsilon for this level, or a lower learning rate",
                            level, used, size, n, perplexity)


def _shuffles(loader: Any) -> bool:
    sampler = getattr(loader, "sampler", None)
    return isinstance(sampler, torch.utils.data.RandomSampler)


def _as_batch(batch: Any) -> torch.Tensor:
    if isinstance(batch, (list, tuple)):  # TensorDataset batches
        batch = batch[0]
    return torch.as_tensor(batch, dtype=torch.float32)


def _rows(data: Any, index: Sequence[int]) -> torch.Tensor:
    """Rows ``index`` of a tensor, an array or an :class:`EmbDataset` as a float tensor ``[len(index), D]``."""
    source = getattr(data, "embeddings", data)
    if isinstance(source, torch.Tensor):
        return source[torch.as_tensor(index)].float()
    try:
        return torch.as_tensor(source[list(index)], dtype=torch.float32)
    except (TypeError, IndexError, KeyError):
        return torch.stack([torch.as_tensor(data[i], dtype=torch.float32) for i in index])


def _row_batches(data: Any, batch_size: int) -> Iterable[torch.Tensor]:
    for start in range(0, len(data), batch_size):
        yield _rows(data, range(start, min(start + batch_size, len(data))))


def _collision_groups(codes: torch.Tensor) -> list[list[int]]:
    """Item indices of each ID held by more than one item."""
    _, inverse, counts = torch.unique(codes, dim=0, return_inverse=True, return_counts=True)
    order = torch.argsort(inverse, stable=True)
    groups = torch.split(order, counts.tolist())
    return [g.tolist() for g in groups if len(g) > 1]


def _disambiguator(codes: torch.Tensor) -> torch.Tensor:
    """``[N, 1]``: each item's rank among the items sharing its ID (0 for a unique ID)."""
    extra = torch.zeros(len(codes), 1, dtype=codes.dtype)
    for group in _collision_groups(codes):
        extra[group, 0] = torch.arange(len(group), dtype=codes.dtype)
    return extra
