"""Multi-task models: output layout, ESMM's product, and the shared-parameter declarations."""

import pytest
import torch
import torch.nn.functional as F

from trainhub.models import get_model_entry, list_models, toy
from trainhub.models.multitask import AITM, ESMM, MMOE, PLE, SharedBottom
from trainhub.models.multitask.esmm import product_logit

MTL_MODELS = ["AITM", "ESMM", "MMOE", "PLE", "SharedBottom"]


def build(name):
    torch.manual_seed(0)
    entry = get_model_entry(name)
    kwargs, batch = entry.example()
    return entry.cls(**kwargs), batch


def test_all_multitask_models_are_registered():
    assert set(MTL_MODELS) <= set(list_models("multitask"))


@pytest.mark.parametrize("name", MTL_MODELS)
def test_output_is_one_logit_column_per_task(name):
    model, batch = build(name)
    out = model(batch)
    assert out.shape == (toy.BATCH_SIZE, len(model.task_types))
    assert torch.isfinite(out).all()


def _params_reached_by(model, batch, column):
    model.zero_grad(set_to_none=True)
    model(batch)[:, column].sum().backward()
    return {id(p) for p in model.parameters() if p.grad is not None and p.grad.abs().sum() > 0}


@pytest.mark.parametrize("name", MTL_MODELS)
def test_shared_parameters_are_reached_by_every_supervised_task(name):
    model, batch = build(name)
    model.train()
    columns = model.supervised_outputs or range(len(model.task_types))
    reached = [_params_reached_by(model, batch, c) for c in columns]
    by_two_or_more = {p for p in set().union(*reached) if sum(p in r for r in reached) >= 2}
    shared = {id(p) for p in model.shared_parameters()}
    assert shared and shared <= by_two_or_more
    if name in ("SharedBottom", "MMOE", "PLE"):
        # for these, "shared by design" and "reached by several tasks" are the same set
        assert shared == by_two_or_more
    last = {id(p) for p in model.last_shared_parameters()}
    assert last and last <= shared
    specific = {id(p) for p in model.task_parameters()}
    assert not specific & shared and len(specific) + len(shared) == len(list(model.parameters()))


def test_last_shared_layer_is_the_last_bottom_layer_not_an_embedding():
    model, _ = build("SharedBottom")
    (last,) = model.last_shared_parameters()
    linears = [m for m in model.bottom.modules() if isinstance(m, torch.nn.Linear)]
    assert last is linears[-1].weight
    ple, _ = build("PLE")
    assert {id(p) for p in ple.last_shared_parameters()} == {
        id([m for m in e.modules() if isinstance(m, torch.nn.Linear)][-1].weight) for e in ple.cgc_layers[-1].shared}


def test_esmm_ctcvr_is_the_product_of_ctr_and_cvr_and_only_those_are_supervised():
    model, batch = build("ESMM")
    out = model(batch)
    cvr, ctr, ctcvr = torch.sigmoid(out).unbind(1)
    assert torch.allclose(ctcvr, ctr * cvr, atol=1e-6)
    assert model.supervised_outputs == (1, 2)


def test_product_logit_is_stable_at_extreme_logits():
    a = torch.tensor([-60.0, -5.0, 0.0, 5.0, 40.0, 90.0], requires_grad=True)
    b = torch.tensor([-70.0, 3.0, 0.0, -2.0, 40.0, 90.0], requires_grad=True)
    z = product_logit(a, b)
    p = torch.sigmoid(a.double()) * torch.sigmoid(b.double())
    # compare in log space where p underflows, in probability space elsewhere
    assert torch.allclose(F.logsigmoid(z.double())[:2], torch.log(p[:2]), rtol=1e-4)
    assert torch.allclose(torch.sigmoid(z.double())[2:], p[2:], atol=1e-6)
    loss = F.binary_cross_entropy_with_logits(z, torch.tensor([1.0, 0, 1, 0, 0, 1]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
    # a confident CTCVR=1 prediction labelled 0 gives a large but finite loss (BCELoss would clip at 100)
    assert F.binary_cross_entropy_with_logits(z[4:5], torch.zeros(1)) > 30


def test_constructor_errors_name_the_problem():
    feats = toy.sparse_features()
    with pytest.raises(ValueError, match="task_types\\[1\\]"):
        SharedBottom(feats, ["classification", "ranking"], {"dims": [8]}, [{}, {}])
    with pytest.raises(ValueError, match="tower_params_list has 1"):
        MMOE(feats, ["classification", "regression"], 2, {"dims": [8]}, [{}])
    with pytest.raises(ValueError, match="expert_params needs hidden layers"):
        PLE(feats, ["classification"], 1, 1, 1, {}, [{}])
    with pytest.raises(ValueError, match="n_task"):
        AITM(feats, 0, {"dims": [8]}, [])


def test_two_models_from_one_feature_list_do_not_share_embeddings():
    feats = toy.sparse_features()
    a = ESMM(feats[:2], feats[2:], {"dims": [8]}, {"dims": [8]})
    b = ESMM(feats[:2], feats[2:], {"dims": [8]}, {"dims": [8]})
    assert all(pa.data_ptr() != pb.data_ptr() for pa, pb in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("model_cls, kwargs", [
    (MMOE, dict(n_expert=3, expert_params={"dims": [16, 8]})),
    (PLE, dict(n_level=3, n_expert_specific=2, n_expert_shared=1, expert_params={"dims": [16, 8]})),
    (PLE, dict(n_level=2, n_expert_specific=0, n_expert_shared=2, expert_params={"dims": [16]})),
])
def test_experts_side_by_side_give_the_outputs_and_gradients_of_the_loop(model_cls, kwargs, monkeypatch):
    import importlib

    def run(side_by_side: bool):
        module = importlib.import_module(model_cls.__module__)
        if not side_by_side:
            monkeypatch.setattr(module, "stacked_mlps", lambda mlps, x: torch.stack([m(x) for m in mlps], dim=1))
        torch.manual_seed(0)
        model = model_cls(toy.sparse_features() + toy.dense_features(), ["classification", "regression"],
                          tower_params_list=[{"dims": [8]}, {"dims": [8]}], **kwargs)
        out = model(toy.batch())
        out.sum().backward()
        monkeypatch.undo()
        return out, {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    (fast, fast_grads), (loop, loop_grads) = run(True), run(False)
    torch.testing.assert_close(fast, loop, rtol=1e-5, atol=1e-6)
    assert fast_grads.keys() == loop_grads.keys()
    # gradients of order 1-10; a bias before a batch norm has an exact gradient of 0 and rounding noise
    for name in loop_grads:
        torch.testing.assert_close(fast_grads[name], loop_grads[name], rtol=1e-4, atol=1e-4, msg=name)
