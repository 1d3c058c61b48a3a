import pytest
import torch
from torch import nn

from trainhub.features import RandomNormal, SparseFeature
from trainhub.nn import EmbeddingCollection
from trainhub.optim import (
    HybridOptimizer,
    RowWiseAdagrad,
    RowWiseAdam,
    RowWiseSGD,
    build_optimizer,
    clip_grad_norm_,
    set_sparse_embeddings,
)


class Tiny(nn.Module):
    def __init__(self, sparse: bool):
        super().__init__()
        self.features = [SparseFeature("a", 20, 4), SparseFeature("b", 30, 4)]
        self.embedding = EmbeddingCollection(self.features, sparse_grad=sparse)
        self.head = nn.Linear(8, 1)

    def forward(self, x):
        return self.head(self.embedding(x, self.features, squeeze_dim=True)).squeeze(1)


def _batch(seed: int, low: int = 0, high: int = 20):
    g = torch.Generator().manual_seed(seed)
    return {"a": torch.randint(low, high, (16,), generator=g), "b": torch.randint(0, 30, (16,), generator=g)}


def _train(sparse: bool, optimizer_fn, params: dict, batches) -> Tiny:
    torch.manual_seed(0)
    model = Tiny(sparse)
    opt = build_optimizer(model.parameters(), optimizer_fn, params)
    for x in batches:
        model(x).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
    return model


@pytest.mark.parametrize("optimizer_fn, params", [
    (torch.optim.Adagrad, {"lr": 0.1}),
    (torch.optim.SGD, {"lr": 0.1}),
])
def test_adagrad_and_sgd_rows_are_exactly_the_dense_rule(optimizer_fn, params):
    batches = [_batch(i, 0, 10) for i in range(4)]  # rows 10..19 of "a" never touched
    sparse, dense = _train(True, optimizer_fn, params, batches), _train(False, optimizer_fn, params, batches)
    assert isinstance(build_optimizer(Tiny(True).parameters(), optimizer_fn, params), HybridOptimizer)
    for p, q in zip(sparse.state_dict().values(), dense.state_dict().values()):
        assert torch.allclose(p, q, atol=1e-6)


def _sparse_vs_dense_adam(steps: int, catch_up: bool, num_rows: int = 50, dim: int = 4, grad_scale: float = 1.0,
                          weight_decay: float = 0.0, decoupled: bool = False, touched: int = 8):
    torch.manual_seed(0)
    w0 = torch.randn(num_rows, dim)
    ours, ref = nn.Parameter(w0.clone()), nn.Parameter(w0.clone())
    opt = RowWiseAdam([ours], lr=0.01, catch_up=catch_up, weight_decay=weight_decay,
                      decoupled_weight_decay=decoupled)
    ref_opt = (torch.optim.AdamW if decoupled else torch.optim.Adam)([ref], lr=0.01, weight_decay=weight_decay)
    for _ in range(steps):
        rows = torch.unique(torch.randint(0, num_rows, (touched,)))
        g = torch.randn(len(rows), dim) * grad_scale
        ours.grad = torch.sparse_coo_tensor(rows.unsqueeze(0), g, (num_rows, dim), check_invariants=True)
        ref.grad = torch.zeros(num_rows, dim).index_copy_(0, rows, g)
        opt.step()
        ref_opt.step()
    opt.flush()
    return w0, ours, ref


def test_row_wise_adam_with_catch_up_follows_dense_adam():
    w0, ours, ref = _sparse_vs_dense_adam(300, catch_up=True)
    assert (ref - w0).abs().mean() > 0.05  # the rows really moved
    assert torch.allclose(ours, ref, atol=2e-5)


def test_catch_up_follows_dense_adam_where_eps_matters():
    # Embedding gradients are often ~1e-6: Adam's eps then shapes how far an untouched row drifts.
    w0, ours, ref = _sparse_vs_dense_adam(300, catch_up=True, grad_scale=1e-6)
    moved = (ref - w0).norm()
    assert moved > 0.1
    assert (ours - ref).norm() < 0.005 * moved


@pytest.mark.parametrize("weight_decay, grad_scale, touched, tolerance", [
    (1e-5, 1e-6, 8, 0.02),  # embedding-sized gradients and the decay of the benchmarks
    (1e-3, 1e-5, 8, 0.02),
    (1e-2, 1.0, 8, 0.03),
    (1e-2, 1.0, 2, 0.07),  # rows idle for ~25 steps at a time: the decay dominates their motion
])
def test_catch_up_follows_dense_adam_with_l2_weight_decay(weight_decay, grad_scale, touched, tolerance):
    # Dense Adam keeps pulling an untouched row towards zero (its gradient is wd * w); the catch-up
    # applies that pull in closed form. Without it the rows end 25-90% of the distance off.
    w0, ours, ref = _sparse_vs_dense_adam(300, True, grad_scale=grad_scale, weight_decay=weight_decay,
                                          touched=touched)
    moved = (ref - w0).norm()
    assert moved > 1.0
    assert (ours - ref).norm() < tolerance * moved


def test_catch_up_follows_adamw_decay_of_untouched_rows():
    w0, ours, ref = _sparse_vs_dense_adam(300, True, weight_decay=0.1, decoupled=True)
    moved = (ref - w0).norm()
    assert moved > 1.0
    assert (ours - ref).norm() < 0.01 * moved


def test_lazy_adam_leaves_untouched_rows_alone():
    w0, ours, ref = _sparse_vs_dense_adam(3, catch_up=False, num_rows=400)
    assert (ours == w0).all(dim=1).sum() > 300  # never touched: never moved
    # Rows touched once keep drifting under dense Adam's momentum, not under the lazy rule.
    assert not torch.allclose(ours, ref, atol=1e-4)


@pytest.mark.parametrize("last", [3, 700, 5_000, 50_000])
@pytest.mark.parametrize("missed", [1, 4, 60, 3_000])
def test_catch_up_factor_equals_the_series_it_sums(last, missed):
    from trainhub.optim.rowwise import _catch_up_factor

    b1, b2 = 0.9, 0.999
    series = sum((b1 / b2**0.5) ** i * (1 - b2 ** (last + i)) ** 0.5 / (1 - b1 ** (last + i))
                 for i in range(1, missed + 1))
    got, _ = _catch_up_factor(torch.tensor([last]), torch.tensor([missed]), b1, b2)
    assert got.item() == pytest.approx(series, rel=2e-4)


def test_row_wise_adam_on_a_dense_gradient_is_torch_adam():
    torch.manual_seed(0)
    w1 = nn.Parameter(torch.randn(6, 3))
    w2 = nn.Parameter(w1.detach().clone())
    ours = RowWiseAdam([w1], lr=0.1, weight_decay=0.01)
    ref = torch.optim.Adam([w2], lr=0.1, weight_decay=0.01)
    for _ in range(3):
        g = torch.randn(6, 3)
        w1.grad, w2.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
    assert torch.allclose(w1, w2, atol=1e-6)


def test_adamw_decay_is_decoupled_and_deferred_for_untouched_rows():
    w = nn.Parameter(torch.ones(4, 2))
    opt = RowWiseAdam([w], lr=0.1, weight_decay=0.5, decoupled_weight_decay=True)
    for _ in range(2):
        w.grad = torch.sparse_coo_tensor(torch.tensor([[1]]), torch.zeros(1, 2), (4, 2), check_invariants=True)
        opt.step()
    assert torch.allclose(w[1], torch.full((2,), (1 - 0.1 * 0.5) ** 2))
    assert torch.equal(w[0], torch.ones(2))  # deferred until the row is touched or flushed
    opt.flush()
    assert torch.allclose(w[0], torch.full((2,), (1 - 0.1 * 0.5) ** 2))


class TwoLookups(nn.Module):
    """Reads one fused table twice per forward pass, like a user tower and an item tower."""

    def __init__(self, sparse: bool):
        super().__init__()
        # rows of order 1: gradients far above Adam's eps, where the catch-up is exact
        self.features = [SparseFeature(name, size, 4, initializer=RandomNormal(0.0, 1.0))
                         for name, size in [("a", 20), ("b", 30)]]
        self.embedding = EmbeddingCollection(self.features, sparse_grad=sparse)
        self.head = nn.Linear(4, 1)

    def forward(self, x):
        user = self.embedding(x, self.features[:1], squeeze_dim=True)
        item = self.embedding(x, self.features[1:], squeeze_dim=True)
        return self.head(user * item).squeeze(1)


def _windows(steps: int) -> list[dict]:
    # ids from sliding windows: most rows sit out several steps between touches
    return [_batch(i, (i % 3) * 5, (i % 3) * 5 + 8) for i in range(steps)]


def _adam_sparse_vs_dense(model_cls, batches, grad_accum: int = 1):
    models = []
    for sparse in (True, False):
        torch.manual_seed(0)
        model = model_cls(sparse)
        opt = build_optimizer(model.parameters(), torch.optim.Adam, {"lr": 0.05})
        for i, x in enumerate(batches):
            model(x).sub(1).pow(2).mean().backward()
            if (i + 1) % grad_accum == 0:
                opt.step()
                opt.zero_grad()
        if sparse:
            opt.flush()
        models.append(model)
    return [m.state_dict() for m in models]


@pytest.mark.parametrize("model_cls, grad_accum", [(Tiny, 1), (TwoLookups, 1), (Tiny, 2)])
def test_training_lookups_see_rows_where_dense_adam_has_them(model_cls, grad_accum, monkeypatch):
    # The forward pass reads rows caught up to the coming step, so the gradients, and with them
    # the whole model, follow dense Adam (without the catch-up at lookup they end 9-32% off).
    reused = []
    take = RowWiseAdam._take_read
    monkeypatch.setattr(RowWiseAdam, "_take_read", _spy(take, reused))
    ours, dense = _adam_sparse_vs_dense(model_cls, _windows(60), grad_accum)
    for name in dense:
        assert torch.allclose(ours[name], dense[name], atol=2e-5), name
    # The step reuses the lookups' work when its rows are theirs (one lookup, or two merged).
    assert sum(reused) >= len(reused) - 1 if grad_accum == 1 else not any(reused)


def test_a_later_optimizer_takes_over_the_tables_lookups():
    from trainhub.nn.fused_table import _row_readers

    model = Tiny(True)
    weight = next(p for p in model.parameters() if p.dim() == 2 and p.shape[0] == 50)  # the fused table
    adam = build_optimizer(model.parameters(), torch.optim.Adam, {"lr": 0.1})
    assert _row_readers.get(weight) is not None
    adagrad = build_optimizer(model.parameters(), torch.optim.Adagrad, {"lr": 0.1})
    assert _row_readers.get(weight) is None  # the earlier Adam (still alive) no longer shapes lookups
    assert adam is not None and adagrad is not None


def _spy(take, record):
    def spied(self, *args):
        values = take(self, *args)
        record.append(values is not None)
        return values
    return spied


def test_gradient_accumulation_sums_uncoalesced_rows():
    torch.manual_seed(0)
    w = nn.Parameter(torch.zeros(5, 2))
    opt = RowWiseSGD([w], lr=1.0)
    g1 = torch.sparse_coo_tensor(torch.tensor([[1, 3]]), torch.ones(2, 2), (5, 2), check_invariants=True)
    g2 = torch.sparse_coo_tensor(torch.tensor([[3]]), torch.ones(1, 2), (5, 2), check_invariants=True)
    w.grad = g1 + g2  # what autograd accumulates over two backward passes
    opt.step()
    assert torch.equal(w[1], -torch.ones(2)) and torch.equal(w[3], -2 * torch.ones(2))


def test_hybrid_optimizer_schedulers_move_both_learning_rates_and_state_round_trips():
    model = Tiny(True)
    opt = build_optimizer(model.parameters(), torch.optim.Adam, {"lr": 0.1})
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    model(_batch(0)).sum().backward()
    opt.step()
    sched.step()
    assert opt.dense.param_groups[0]["lr"] == opt.rowwise.param_groups[0]["lr"] == 0.05
    other = build_optimizer(Tiny(True).parameters(), torch.optim.Adam, {"lr": 0.1})
    other.load_state_dict(opt.state_dict())
    assert other.rowwise.param_groups[0]["lr"] == 0.05
    assert other.param_groups[0] is other.dense.param_groups[0]  # still linked after loading
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(other, patience=0)
    plateau.step(1.0)
    plateau.step(2.0)
    assert other.rowwise.param_groups[0]["lr"] == pytest.approx(0.005)


def test_sgd_and_adagrad_keep_their_kernel_for_sparse_dense_gradients():
    for optimizer_fn in (torch.optim.SGD, torch.optim.Adagrad):
        opt = build_optimizer(Tiny(True).parameters(), optimizer_fn, {"lr": 0.1})
        assert not opt.dense.defaults.get("fused")


@pytest.mark.parametrize("optimizer_fn", [torch.optim.Adam, torch.optim.AdamW])
def test_dense_weights_take_the_fused_kernel_unless_the_user_chose(optimizer_fn):
    params = {"lr": 0.05, "weight_decay": 1e-3}
    opt = build_optimizer(Tiny(True).parameters(), optimizer_fn, params)
    assert opt.dense.defaults["fused"] is True
    assert "fused" not in params  # the caller's dict is left as it was
    chosen = build_optimizer(Tiny(True).parameters(), optimizer_fn, {**params, "foreach": False})
    assert not chosen.dense.defaults["fused"] and chosen.dense.defaults["foreach"] is False
    # the same update as the for-loop kernel, up to float rounding
    batches = [_batch(s) for s in range(6)]
    fused = _train(True, optimizer_fn, params, batches)
    loop = _train(True, optimizer_fn, {**params, "foreach": False}, batches)
    torch.manual_seed(0)
    assert not torch.equal(fused.head.weight, Tiny(True).head.weight)  # the weights did move
    torch.testing.assert_close(fused.state_dict(), loop.state_dict(), rtol=1e-5, atol=1e-6)


def test_without_row_sparse_tables_the_optimizer_is_the_users_own():
    model = Tiny(False)
    assert type(build_optimizer(model.parameters(), torch.optim.Adam, {"lr": 0.1})) is torch.optim.Adam


def test_optimizer_without_row_wise_form_is_refused_with_the_way_out():
    with pytest.raises(ValueError, match="sparse_embeddings=False"):
        build_optimizer(Tiny(True).parameters(), torch.optim.RMSprop, {"lr": 0.1})


def test_clip_grad_norm_counts_sparse_rows_like_dense_ones():
    sparse, dense = Tiny(True), Tiny(False)
    dense.load_state_dict(sparse.state_dict())
    for m in (sparse, dense):
        m(_batch(3)).pow(2).sum().backward()
    ours = clip_grad_norm_(sparse.parameters(), 0.01)
    ref = torch.nn.utils.clip_grad_norm_(dense.parameters(), 0.01)
    assert torch.allclose(ours, ref)
    assert torch.allclose(sparse.embedding.fused["d4"].weight.grad.to_dense(), dense.embedding.fused["d4"].weight.grad)


def test_set_sparse_embeddings_switches_every_table():
    model = Tiny(False)
    assert set_sparse_embeddings(model, True) == 1
    model(_batch(0)).sum().backward()
    assert model.embedding.fused["d4"].weight.grad.is_sparse
    assert isinstance(RowWiseAdagrad([nn.Parameter(torch.zeros(1))]), torch.optim.Optimizer)
