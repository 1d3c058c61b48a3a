"""One test over every registered model: build from its example, forward, backward, no NaN."""

import pytest
import torch

from trainhub.models import get_model_entry, list_models


def test_registry_is_not_empty_and_has_the_foundation_models():
    assert {"WideDeep", "DeepFM", "DCN", "DCNv2"} <= set(list_models("ranking"))


def _first_tensor(out):
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        return next(iter(out.values()))
    return out[0]


def _as_loss(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        # -inf marks a masked candidate score (YoutubeSBC); NaN and +inf still fail
        out = out.float().masked_fill(out == float("-inf"), 0.0)
        return out.pow(2).mean()
    if isinstance(out, dict):
        return sum(_as_loss(v) for v in out.values())
    return sum(_as_loss(v) for v in out if isinstance(v, (torch.Tensor, dict, tuple, list)))


@pytest.mark.parametrize("name", list_models())
def test_model_forward_backward(name):
    entry = get_model_entry(name)
    torch.manual_seed(0)
    kwargs, batch = entry.example()
    model = entry.cls(**kwargs)
    model.train()
    out = model(batch)
    first = _first_tensor(out)
    batch_size = next(iter(batch.values())).shape[0]
    assert first.shape[0] == batch_size, f"{name}: leading dim {first.shape[0]} != batch {batch_size}"
    if entry.family == "ranking":
        assert first.shape == (batch_size,), f"{name}: ranking models return logits [B], got {tuple(first.shape)}"
    loss = _as_loss(out)
    assert torch.isfinite(loss), f"{name}: non-finite output"
    loss.backward()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    untouched = [n for n, p in params if p.grad is None or p.grad.abs().sum() == 0]
    assert not untouched, f"{name}: no gradient reached {untouched}"
    assert all(torch.isfinite(p.grad).all() for _, p in params), f"{name}: non-finite gradient"
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(_as_loss(model(batch)))
