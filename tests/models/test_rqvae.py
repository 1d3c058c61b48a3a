"""RQ-VAE and its quantizers: residual reconstruction, code shapes, straight-through gradients,
Sinkhorn balance, k-means initialisation, collision resolution and the semantic-ID report."""

from __future__ import annotations

import logging
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from trainhub.data.semantic import EmbDataset
from trainhub.models.generative.quantizer import (
    ResidualVectorQuantizer,
    VectorQuantizer,
    codebook_stats,
    kmeans,
    sinkhorn_algorithm,
)
from trainhub.models.generative.rqvae import RQVAEModel


def small_model(**kw):
    args = dict(in_dim=16, num_emb_list=[8, 8], e_dim=4, layers=[12])
    return RQVAEModel(**{**args, **kw})


# -- quantizers -----------------------------------------------------------------------------------
def test_residual_quantization_reconstructs_sums_of_codes_exactly():
    torch.manual_seed(0)
    rq = ResidualVectorQuantizer([4, 4], e_dim=3)
    coarse = torch.tensor([[5.0, 0, 0], [0, 5, 0], [0, 0, 5], [-5, -5, -5]])
    fine = torch.tensor([[0.1, 0, 0], [0, 0.1, 0], [0, 0, 0.1], [0.1, 0.1, 0.1]])
    with torch.no_grad():
        rq.vq_layers[0].embedding.weight.copy_(coarse)
        rq.vq_layers[1].embedding.weight.copy_(fine)
    want = torch.tensor([[0, 1], [1, 3], [3, 2], [2, 0], [3, 3]])
    x = coarse[want[:, 0]] + fine[want[:, 1]]  # [5, 3]
    x_q, loss, indices = rq(x)
    assert torch.equal(indices, want)
    torch.testing.assert_close(x_q, x)
    # mean over levels of (1 + beta) * that level's error; the last level leaves none
    torch.testing.assert_close(loss, F.mse_loss(coarse[want[:, 0]], x) * 1.25 / 2)


def test_more_levels_leave_a_smaller_residual():
    torch.manual_seed(0)
    x = torch.randn(256, 6)
    rq = ResidualVectorQuantizer([16, 16, 16], e_dim=6, kmeans_init=True, kmeans_iters=20)
    errors = []
    residual = x
    for vq in rq.vq_layers:  # k-means per level on what the previous levels left
        vq.train()
        x_res, _, _ = vq(residual, use_sk=False)
        residual = residual - x_res
        errors.append(float(residual.pow(2).mean()))
    assert errors[0] < float(x.pow(2).mean()) and errors[1] < errors[0] and errors[2] < errors[1]


def test_indices_have_one_column_per_level_and_stay_in_the_codebook():
    model = small_model(num_emb_list=[8, 5, 3])
    _, _, indices = model(torch.randn(10, 16))
    assert indices.shape == (10, 3) and indices.dtype == torch.long
    for level, size in enumerate([8, 5, 3]):
        assert 0 <= int(indices[:, level].min()) and int(indices[:, level].max()) < size
    assert model.get_indices(torch.randn(7, 16)).shape == (7, 3)


def test_straight_through_gradient_and_losses():
    torch.manual_seed(0)
    vq = VectorQuantizer(n_e=6, e_dim=3, beta=0.25, sk_epsilon=0.0)
    x = torch.randn(9, 3, requires_grad=True)
    x_q, loss, indices = vq(x)
    code = vq.embedding.weight[indices]
    torch.testing.assert_close(x_q, code)  # forward: the code itself
    want = F.mse_loss(code, x) * 1.25  # codebook + 0.25 * commitment have the same value
    torch.testing.assert_close(loss, want)
    (x_q * torch.arange(27.0).view(9, 3)).sum().backward()
    torch.testing.assert_close(x.grad, torch.arange(27.0).view(9, 3))  # identity to x
    assert vq.embedding.weight.grad is None  # x_q alone sends nothing to the codebook
    x.grad = None
    vq(x)[1].backward()
    assert vq.embedding.weight.grad.abs().sum() > 0 and x.grad.abs().sum() > 0


def test_sinkhorn_matches_the_plain_algorithm_and_balances_codes():
    torch.manual_seed(0)
    d = torch.rand(12, 4).double()
    eps, iters = 0.5, 50
    q = sinkhorn_algorithm(d, eps, iters)
    # oracle: the textbook multiplicative form (stable at this epsilon)
    p = torch.exp(-d / eps)
    p /= p.sum()
    for _ in range(iters):
        p /= p.sum(1, keepdim=True) * 12
        p /= p.sum(0, keepdim=True) * 4
    torch.testing.assert_close(q, p * 12)
    torch.testing.assert_close(q.sum(0), torch.full((4,), 3.0, dtype=torch.float64))  # B / K per code
    torch.testing.assert_close(q.sum(1), torch.ones(12, dtype=torch.float64), atol=1e-4, rtol=0)
    # every sample nearest to code 0: the balanced assignment spreads them over all codes (about 3 each)
    near0 = torch.cat([torch.zeros(12, 1), torch.ones(12, 3)], 1) + 0.01 * torch.rand(12, 4)
    assert torch.bincount(near0.argmin(1), minlength=4).tolist() == [12, 0, 0, 0]
    counts = torch.bincount(sinkhorn_algorithm(near0, 0.003, 200).argmax(1), minlength=4)
    assert counts.min() >= 2 and counts.max() <= 4


def test_sinkhorn_is_finite_for_tiny_epsilons():
    q = sinkhorn_algorithm(torch.rand(8, 5) * 2 - 1, 1e-4, 20)
    assert torch.isfinite(q).all()


def test_kmeans_init_takes_sklearn_centres_on_the_first_training_batch():
    torch.manual_seed(0)
    blobs = torch.cat([torch.randn(20, 2) * 0.05 + torch.tensor(c) for c in ([5.0, 0.0], [0.0, 5.0], [-5.0, -5.0])])
    vq = VectorQuantizer(n_e=3, e_dim=2, kmeans_init=True, kmeans_iters=50)
    assert not vq.initted and vq.embedding.weight.abs().sum() == 0
    vq.eval()
    vq(blobs)
    assert not vq.initted  # evaluation never initialises
    vq.train()
    vq(blobs)
    assert vq.initted
    centres = sorted(vq.embedding.weight.detach().round().tolist())
    assert centres == [[-5.0, -5.0], [0.0, 5.0], [5.0, 0.0]]


def test_kmeans_needs_as_many_vectors_as_codes():
    with pytest.raises(ValueError, match="at least 8 vectors.*has 5"):
        kmeans(torch.randn(5, 2), 8)


def test_a_loaded_codebook_is_not_reinitialised():
    source = small_model(kmeans_init=True)
    source.train()
    source(torch.randn(32, 16))
    target = small_model(kmeans_init=True)
    target.load_state_dict(source.state_dict())
    assert all(vq.initted for vq in target.rq.vq_layers)
    target.train()
    target(torch.randn(32, 16))
    torch.testing.assert_close(target.rq.vq_layers[0].embedding.weight, source.rq.vq_layers[0].embedding.weight)


def test_sk_epsilons_must_match_the_levels():
    with pytest.raises(ValueError, match="sk_epsilons has 1 values for 2 codebooks"):
        ResidualVectorQuantizer([4, 4], 3, sk_epsilons=[0.1])


# -- the model ------------------------------------------------------------------------------------
def test_forward_shapes_and_loss_types():
    x = torch.randn(5, 16)
    model = small_model()
    recon, rq_loss, indices = model(x)
    assert recon.shape == (5, 16) and rq_loss.dim() == 0 and indices.shape == (5, 2)
    total, recon_loss = model.compute_loss(recon, rq_loss, xs=x)
    torch.testing.assert_close(recon_loss, F.mse_loss(recon, x))
    torch.testing.assert_close(total, recon_loss + rq_loss)
    l1 = small_model(loss_type="l1", quant_loss_weight=0.5)
    recon, rq_loss, _ = l1(x)
    total, recon_loss = l1.compute_loss(recon, rq_loss, xs=x)
    torch.testing.assert_close(total, F.l1_loss(recon, x) + 0.5 * rq_loss)
    with pytest.raises(ValueError, match="loss_type"):
        small_model(loss_type="huber")
    with pytest.raises(ValueError, match=r"\[N, 16\]"):
        model(torch.randn(5, 15))


def test_defaults_build_where_upstream_raised():
    model = RQVAEModel(in_dim=8, e_dim=4)
    assert model.num_emb_list == [256, 256, 256] and model.sk_epsilons == [0.0, 0.0, 0.0]
    assert model(torch.randn(3, 8))[2].shape == (3, 3)


def test_reconstruction_can_be_negative_and_improves_with_training():
    torch.manual_seed(0)
    x = torch.randn(128, 3) @ torch.randn(3, 16)  # rank 3: a 4-wide latent can hold it
    model = small_model(num_emb_list=[16, 16], kmeans_init=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        recon, rq_loss, _ = model(x)
        loss, recon_loss = model.compute_loss(recon, rq_loss, xs=x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(recon_loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert (model(x)[0] < 0).any()  # a linear last layer (upstream's ReLU made this impossible)


def test_the_registry_example_trains_every_parameter():
    model = small_model(sk_epsilons=[0.0, 0.003])
    batch = {"embeddings": torch.randn(6, 16)}
    recon, rq_loss, _ = model(batch)
    (recon.pow(2).mean() + rq_loss).backward()
    untouched = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not untouched


# -- semantic IDs ---------------------------------------------------------------------------------
def clustered_items(n_clusters=4, per_cluster=6, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_clusters, dim, generator=g) * 3
    return (centres.repeat_interleave(per_cluster, 0) + 0.05 * torch.randn(n_clusters * per_cluster, dim, generator=g))


def collision_rate(ids):
    codes = [tuple(v) for v in ids.values()]
    return 1 - len(set(codes)) / len(codes)


def test_collision_resolution_reduces_collisions(caplog):
    torch.manual_seed(0)
    items = clustered_items()
    model = small_model(num_emb_list=[4, 8])
    model.train()
    model(items)  # nothing trained: near items share codes
    before = codebook_stats(torch.stack([model.get_indices(items)]).squeeze(0), [4, 8])["collision_rate"]
    assert before > 0.3
    with caplog.at_level(logging.INFO, logger="trainhub.models.generative.rqvae"):
        ids = model.generate_semantic_ids(EmbDataset(items), DataLoader(EmbDataset(items), batch_size=5))
    assert sorted(ids) == list(range(24))
    assert all(len(v) == 2 and v[0].startswith("<a_") and v[1].startswith("<b_") for v in ids.values())
    assert collision_rate(ids) < before
    assert "collision rate" in caplog.text and "unique" in caplog.text
    # the epsilons changed for re-assignment are put back
    assert [vq.sk_epsilon for vq in model.rq.vq_layers] == [0.0, 0.0]


def test_extra_level_makes_every_id_unique():
    items = torch.cat([clustered_items(), clustered_items()[:3]])  # exact duplicates cannot be separated
    model = small_model(num_emb_list=[2, 2])
    ids = model.generate_semantic_ids(items, extra_level=True)
    assert collision_rate(ids) == 0
    assert all(len(v) == 3 and v[2].startswith("<c_") for v in ids.values())
    with pytest.raises(ValueError, match="prefix has 2 formats but 3 levels"):
        model.generate_semantic_ids(items, prefix=["<a_{}>", "<b_{}>"], extra_level=True)


def test_semantic_ids_refuse_a_shuffling_loader():
    items = clustered_items()
    with pytest.raises(ValueError, match="shuffle"):
        small_model().generate_semantic_ids(items, DataLoader(items, batch_size=4, shuffle=True))


def test_collapsed_codebook_is_a_warning_with_numbers(caplog):
    model = small_model(num_emb_list=[8, 8])
    with torch.no_grad():
        for vq in model.rq.vq_layers:
            vq.embedding.weight.zero_()
            vq.embedding.weight[1:] += 1e6  # only code 0 is ever nearest
    with caplog.at_level(logging.WARNING, logger="trainhub.models.generative.rqvae"):
        model.generate_semantic_ids(clustered_items(), extra_level=True)
    assert "level 0 has collapsed: 1 of 8 codes used by 24 items" in caplog.text


def test_codebook_stats_by_hand():
    codes = torch.tensor([[0, 1], [0, 1], [1, 0], [2, 1]])
    stats = codebook_stats(codes, [4, 2])
    assert stats["unique_ids"] == 3 and stats["collision_rate"] == pytest.approx(0.25)
    assert stats["max_conflicts"] == 2 and stats["usage_0"] == pytest.approx(0.75) and stats["usage_1"] == 1.0
    p = torch.tensor([0.5, 0.25, 0.25])
    assert stats["perplexity_0"] == pytest.approx(math.exp(float(-(p * p.log()).sum())))
