"""Torch-RecHub 0.9.0's tests/test_hstu_model.py and tests/test_hllm_embedding_alignment.py, with
imports rewritten for trainhub, plus a parity check against upstream itself (its own venv).

Import mapping: ``torch_rechub.basic.layers`` -> ``trainhub.nn``;
``torch_rechub.models.generative.hstu`` / ``.hllm`` and ``torch_rechub.utils.hstu_utils`` ->
``trainhub.models.generative``; ``torch_rechub.trainers.seq_trainer.SeqTrainer`` ->
``trainhub.trainers.SeqTrainer``. One documented difference: a sequence longer than
``max_seq_len`` raised in upstream; trainhub keeps its most recent ``max_seq_len`` positions.
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from trainhub.models.generative import HLLMModel, HSTUModel, RelPosBias, VocabMask
from trainhub.nn import HSTULayer

REPO = Path(__file__).resolve().parents[2]
RECHUB_PYTHON = REPO / "bench" / ".rechub-venv" / "bin" / "python"


def make_inputs(batch_size=4, seq_len=16, vocab_size=50, pad_prob=0.25, seed=0):
    """Random ids with some PAD positions, random time differences in seconds."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, vocab_size, (batch_size, seq_len), generator=g)
    tokens = tokens.masked_fill(torch.rand(batch_size, seq_len, generator=g) < pad_prob, 0)
    return tokens, torch.randint(0, 3600, (batch_size, seq_len), generator=g)


def small_hstu(**kw):
    return HSTUModel(**{**dict(vocab_size=50, d_model=32, n_heads=4, n_layers=1, dqk=8, dv=8, max_seq_len=32), **kw})


# -- test_hstu_model.py ---------------------------------------------------------------------------------
def test_forward_shape():
    model = small_hstu(n_layers=2, num_time_buckets=16)
    tokens, diffs = make_inputs()
    assert model(tokens, diffs).shape == (4, 16, 50)


def test_padding_embedding_row_stays_zero_after_init():
    assert torch.all(small_hstu().token_embedding.weight[0] == 0)


def test_padding_position_output_is_zero():
    # With tied embeddings and a zero PAD row, every PAD position scores as the output bias alone.
    torch.manual_seed(0)
    model = small_hstu(dropout=0.0).eval()
    tokens = torch.tensor([[5, 7, 0, 0], [1, 2, 3, 0]])
    logits = model(tokens, torch.zeros_like(tokens))
    torch.testing.assert_close(logits[0, 2], logits[1, 3], rtol=0, atol=1e-6)
    torch.testing.assert_close(logits[0, 2], model.output_bias.detach())


def test_padding_mask_changes_non_pad_outputs():
    torch.manual_seed(0)
    layer = HSTULayer(d_model=32, n_heads=4, dqk=8, dv=8, dropout=0.0, max_seq_len=16).eval()
    x = torch.randn(2, 8, 32)
    padding_mask = torch.ones(2, 8, dtype=torch.bool)
    padding_mask[0, 2] = False
    diff = (layer(x, padding_mask=padding_mask)[0, 3:] - layer(x)[0, 3:]).abs().max().item()
    assert diff > 1e-5


def test_seq_len_exceeding_max_keeps_the_most_recent_positions():
    # Upstream raised ValueError("... exceeds max_seq_len ..."); trainhub never fails mid-training.
    model = small_hstu(max_seq_len=8).eval()
    tokens, diffs = make_inputs(seq_len=16)
    logits = model(tokens, diffs)
    assert logits.shape == (4, 16, 50)
    torch.testing.assert_close(logits[:, -8:], model(tokens[:, -8:], diffs[:, -8:]))


def test_d_model_not_divisible_by_n_heads_raises():
    with pytest.raises(ValueError, match="must be divisible"):
        HSTULayer(d_model=30, n_heads=4, dqk=8, dv=8, max_seq_len=16)


def test_tied_embedding_shares_weight():
    model = small_hstu(max_seq_len=16, tie_embeddings=True)
    assert model.output_projection is None
    model.token_embedding.weight.data.fill_(0.5)
    tokens = torch.tensor([[5, 7, 1, 2]])
    logits = model(tokens, torch.zeros_like(tokens))
    assert logits.shape == (1, 4, 50)
    assert model.item_embeddings is model.token_embedding.weight


def test_untied_embedding_keeps_separate_projection():
    model = small_hstu(max_seq_len=16, tie_embeddings=False)
    assert isinstance(model.output_projection, nn.Linear)
    assert model.output_projection.weight.shape == (50, 32)


def test_l2_scoring_without_output_bias_runs():
    model = small_hstu(max_seq_len=16, score_norm="l2", temperature=0.05, use_output_bias=False,
                       scale_input_embedding=True)
    assert model.output_bias is None
    tokens = torch.tensor([[5, 7, 1, 2]])
    logits = model(tokens, torch.zeros_like(tokens))
    assert logits.shape == (1, 4, 50) and torch.isfinite(logits).all()


def test_relpos_bias_bucket_bounds_under_overflow():
    out = RelPosBias(n_heads=4, max_seq_len=16, num_buckets=8)(seq_len=32)
    assert out.shape == (1, 4, 32, 32) and torch.isfinite(out).all()


def test_relpos_bias_init_scale():
    bias = RelPosBias(n_heads=4, max_seq_len=16, num_buckets=32)
    assert bias.rel_pos_bias_table.abs().max().item() <= (1.0 / 32) ** 0.5 + 1e-6


def test_vocab_mask_drops_pad():
    logits = torch.randn(2, 10)
    masked = VocabMask(vocab_size=10, invalid_items=[0]).apply_mask(logits)
    assert (masked[..., 0] <= -1e8).all()
    assert torch.allclose(masked[..., 1:], logits[..., 1:])


def test_vocab_mask_drops_per_user_history():
    logits = torch.randn(2, 10)
    masked = VocabMask(vocab_size=10, invalid_items=[0]).apply_mask(logits, invalid_ids=torch.tensor([[1, 3, 0],
                                                                                                    [2, 5, 0]]))
    assert (masked[:, 0] <= -1e8).all()
    assert masked[0, 1] <= -1e8 and masked[0, 3] <= -1e8 and masked[1, 2] <= -1e8 and masked[1, 5] <= -1e8
    assert torch.allclose(masked[0, 2], logits[0, 2])


def test_seqtrainer_next_token_loss_masks_left_pad_positions():
    from trainhub.trainers import SeqTrainer

    trainer = SeqTrainer(nn.Linear(1, 1), device="cpu", loss_params={"ignore_index": 0, "reduction": "sum"})
    loss = trainer._compute_next_token_loss(torch.zeros(1, 4, 10), torch.tensor([[0, 0, 5, 6]]), torch.tensor([7]))
    # Only the positions holding items (5 and 6) take a loss, over the 9 non-PAD columns.
    assert torch.allclose(loss, torch.tensor(2.0 * math.log(9.0)), atol=1e-6)


def test_seqtrainer_next_token_loss_ignores_pad(tmp_path):
    from trainhub.trainers import SeqTrainer

    torch.manual_seed(0)
    model = HSTUModel(vocab_size=20, d_model=16, n_heads=4, n_layers=1, dqk=4, dv=4, max_seq_len=8, dropout=0.0,
                      num_time_buckets=8)
    seq_tokens = torch.randint(1, 20, (4, 8))
    seq_tokens[:, -2:] = 0
    dataset = TensorDataset(seq_tokens, torch.zeros_like(seq_tokens), torch.zeros(4, 8, dtype=torch.long),
                            torch.randint(1, 20, (4, 1)))
    trainer = SeqTrainer(model, n_epoch=1, device="cpu", model_path=str(tmp_path))
    loss = trainer.train_one_epoch(DataLoader(dataset, batch_size=2, shuffle=False))
    assert loss > 0 and math.isfinite(loss)
    assert trainer.loss_fn.ignore_index == 0


# -- test_hllm_embedding_alignment.py -------------------------------------------------------------------
def test_hllm_accepts_token_indexed_item_embeddings():
    table = torch.randn(5, 4) * 10
    table[0].zero_()
    model = HLLMModel(item_embeddings=table, vocab_size=5, d_model=4, n_heads=2, n_layers=1, max_seq_len=3)
    assert model.item_embeddings.shape == (5, 4)
    assert torch.equal(model.item_embeddings[0], torch.zeros(4))
    assert model.temperature == pytest.approx(0.07)
    assert torch.allclose(model.item_embeddings[1:].norm(dim=-1), torch.ones(4), atol=1e-6)


def test_hllm_forward_returns_bounded_cosine_logits():
    table = torch.randn(5, 4) * 10
    table[0].zero_()
    model = HLLMModel(item_embeddings=table, vocab_size=5, d_model=4, n_heads=2, n_layers=0, max_seq_len=3,
                      dropout=0.0, use_rel_pos_bias=False, use_time_embedding=False)
    logits = model(torch.tensor([[1, 2, 0]]))
    assert logits.shape == (1, 3, 5)
    assert logits.abs().max().item() <= 1.0 / model.temperature + 1e-5


def test_hllm_rejects_wrong_vocab_size():
    with pytest.raises(ValueError, match=r"item_embeddings\.shape\[0\]=4 != vocab_size=5"):
        HLLMModel(item_embeddings=torch.randn(4, 4), vocab_size=5, d_model=4, n_heads=2, n_layers=1, max_seq_len=3)


def test_hllm_rejects_wrong_embedding_dim():
    with pytest.raises(ValueError, match=r"item_embeddings\.shape\[1\]=3 != d_model=4"):
        HLLMModel(item_embeddings=torch.randn(5, 3), vocab_size=5, d_model=4, n_heads=2, n_layers=1, max_seq_len=3)


# -- parity with Torch-RecHub 0.9.0 itself ----------------------------------------------------------------
UPSTREAM = """
import sys, torch
from torch_rechub.models.generative.hstu import HSTUModel
from torch_rechub.models.generative.hllm import HLLMModel
torch.manual_seed(0)
out = {}
configs = [{}, {"tie_embeddings": False, "score_norm": "l2", "temperature": 0.1, "scale_input_embedding": True,
                "time_bucket_unit": "seconds", "time_bucket_divisor": 3.0, "time_bucket_fn": "log"},
           {"use_time_embedding": False}]
for i, kw in enumerate(configs):
    m = HSTUModel(vocab_size=40, d_model=16, n_heads=2, n_layers=2, dqk=8, dv=4, max_seq_len=10,
                  num_time_buckets=20, dropout=0.0, **kw).eval()
    tok = torch.randint(1, 40, (3, 10)); tok[0, :4] = 0; tok[1, :1] = 0  # left padding, full length
    td = torch.randint(0, 500000, (3, 10)) * (tok != 0)
    weights = torch.randn(3, 10, 40)
    logits = m(tok, td)
    (logits * weights).sum().backward()
    out[f"hstu{i}"] = {"kw": kw, "state": m.state_dict(), "tok": tok, "td": td, "weights": weights,
                       "logits": logits.detach(), "no_time": m(tok).detach(),
                       "grads": {n: p.grad for n, p in m.named_parameters()}}
table = torch.randn(40, 16); table[0] = 0
m = HLLMModel(table, 40, d_model=16, n_heads=2, n_layers=2, max_seq_len=10, dropout=0.0, num_time_buckets=64).eval()
torch.nn.init.normal_(m.rel_pos_bias.rel_pos_bias_table)  # upstream zeroes it at init: make it matter
tok = torch.randint(1, 40, (3, 10)); td = torch.randint(0, 500000, (3, 10))  # HLLM upstream: no padding mask
with torch.no_grad():
    out["hllm"] = {"table": table, "state": m.state_dict(), "tok": tok, "td": td, "logits": m(tok, td),
                   "no_time": m(tok)}
torch.save(out, sys.argv[1])
"""


@pytest.mark.skipif(not RECHUB_PYTHON.exists(), reason="needs Torch-RecHub's venv (bench/.rechub-venv)")
def test_torch_rechub_checkpoints_load_and_give_the_same_logits_and_gradients(tmp_path):
    """Upstream HSTU/HLLM weights load by name; logits and HSTU gradients match upstream's."""
    done = subprocess.run([str(RECHUB_PYTHON), "-c", UPSTREAM, str(tmp_path / "up.pt")], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    cases = torch.load(tmp_path / "up.pt", weights_only=True)
    for name, case in cases.items():
        if name == "hllm":
            model = HLLMModel(case["table"], 40, d_model=16, n_heads=2, n_layers=2, max_seq_len=10, dropout=0.0,
                              num_time_buckets=64)
        else:
            model = HSTUModel(vocab_size=40, d_model=16, n_heads=2, n_layers=2, dqk=8, dv=4, max_seq_len=10,
                              num_time_buckets=20, dropout=0.0, **case["kw"])
        model.load_state_dict(case["state"])  # strict: every name matches
        model.eval()
        logits = model(case["tok"], case["td"])
        torch.testing.assert_close(logits, case["logits"], rtol=1e-4, atol=1e-5, msg=name)
        torch.testing.assert_close(model(case["tok"]), case["no_time"], rtol=1e-4, atol=1e-5, msg=name)
        if name != "hllm":
            (logits * case["weights"]).sum().backward()
            for param_name, param in model.named_parameters():
                torch.testing.assert_close(param.grad, case["grads"][param_name], rtol=1e-4, atol=1e-5,
                                           msg=f"{name}: {param_name}")
