"""Generative next-item models: the shared interface, causality, padding, scoring, time buckets, errors."""

from __future__ import annotations

import logging
import math

import pytest
import torch
import torch.nn.functional as F

import trainhub.nn.hstu as hstu_nn
from tests.models import test_sweep as sweep
from trainhub.models import list_models
from trainhub.models.generative import (
    HLLMModel,
    HSTUModel,
    NextItemModel,
    RelativeBucketedTimeAndPositionBias,
    SASRecModel,
    VocabMask,
    example_batch,
    load_item_embeddings,
)
from trainhub.nn import HSTUBlock, HSTULayer
from trainhub.nn.hstu import bucketize_time

VOCAB, DIM, MAX_LEN = 40, 16, 12


def hstu(**kw):
    args = dict(vocab_size=VOCAB, d_model=DIM, n_heads=2, n_layers=2, dqk=8, dv=4, max_seq_len=MAX_LEN,
                num_time_buckets=16, dropout=0.0)
    return HSTUModel(**{**args, **kw})


def sasrec(**kw):
    return SASRecModel(**{**dict(vocab_size=VOCAB, d_model=DIM, n_heads=2, n_layers=2, max_seq_len=MAX_LEN,
                                 dropout=0.0), **kw})


def hllm(**kw):
    table = torch.randn(VOCAB, DIM, generator=torch.Generator().manual_seed(3))
    model = HLLMModel(**{**dict(item_embeddings=table, vocab_size=VOCAB, d_model=DIM, n_heads=2, n_layers=2,
                                max_seq_len=MAX_LEN, dropout=0.0, num_time_buckets=64), **kw})
    torch.nn.init.normal_(model.rel_pos_bias.rel_pos_bias_table)  # a bias big enough to matter
    return model


MODELS = {"hstu": hstu, "sasrec": sasrec, "hllm": hllm,
          "hstu_l2_untied": lambda: hstu(tie_embeddings=False, score_norm="l2", temperature=0.2,
                                         scale_input_embedding=True, time_bucket_unit="seconds",
                                         time_bucket_fn="log", time_bucket_divisor=2.0)}


def batch(batch_size=3, seq_len=8, seed=0):
    data = example_batch(vocab_size=VOCAB, batch_size=batch_size, seq_len=seq_len, seed=seed)
    return data["seq_tokens"], data["time_diffs"]


def build(name):
    torch.manual_seed(0)
    return MODELS[name]().eval()


# -- the interface ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_forward_and_encode_shapes_and_protocol(name):
    model = build(name)
    tokens, diffs = batch()
    assert isinstance(model, NextItemModel)
    assert model(tokens, diffs).shape == (3, 8, VOCAB)
    assert model(tokens).shape == (3, 8, VOCAB)
    assert model.encode(tokens, diffs).shape == (3, 8, DIM)
    assert model.item_embeddings.shape == (VOCAB, DIM)
    assert (model.vocab_size, model.max_seq_len) == (VOCAB, MAX_LEN)
    # the registry's batch dict reaches the same forward
    assert torch.equal(model({"seq_tokens": tokens, "time_diffs": diffs}), model(tokens, diffs))


@pytest.mark.parametrize("name", MODELS)
def test_score_matches_forward_on_every_candidate_form(name):
    model = build(name)
    tokens, diffs = batch()
    logits = model(tokens, diffs)  # [B, L, V]
    hidden = model.encode(tokens, diffs)
    torch.testing.assert_close(model.score(hidden), logits, rtol=0, atol=1e-5)
    shared = torch.tensor([5, 1, 39, 5, 0])
    torch.testing.assert_close(model.score(hidden, shared), logits[..., shared], rtol=0, atol=1e-5)
    per_row = torch.randint(0, VOCAB, (3, 8, 4))
    torch.testing.assert_close(model.score(hidden, per_row), logits.gather(-1, per_row), rtol=0, atol=1e-5)
    # the task's sampled-softmax shapes: rows [N, D] with positives [N, 1] and shared negatives [K]
    rows = hidden.reshape(-1, DIM)[:5]
    positives = torch.tensor([[3], [4], [7], [1], [2]])
    torch.testing.assert_close(model.score(rows, positives), logits.reshape(-1, VOCAB)[:5].gather(1, positives),
                               rtol=0, atol=1e-5)
    assert model.score(rows, shared).shape == (5, 5)


@pytest.mark.parametrize("name", MODELS)
def test_causal_later_tokens_never_change_earlier_logits(name):
    model = build(name)
    tokens, diffs = batch()
    changed_tokens, changed_diffs = tokens.clone(), diffs.clone()
    changed_tokens[:, 5:] = torch.randint(1, VOCAB, (3, 3))
    changed_diffs[:, 5:] = torch.randint(0, 10_000, (3, 3))
    before, after = model(tokens, diffs), model(changed_tokens, changed_diffs)
    torch.testing.assert_close(after[:, :5], before[:, :5], rtol=0, atol=1e-5)
    assert not torch.allclose(after[:, 5:], before[:, 5:])


@pytest.mark.parametrize("name", MODELS)
def test_left_padding_does_not_change_real_positions(name):
    model = build(name)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(1, VOCAB, (2, 5), generator=g)
    diffs = torch.randint(0, 500_000, (2, 5), generator=g).sort(dim=1, descending=True).values
    plain = model(tokens, diffs)
    padded = model(F.pad(tokens, (4, 0)), F.pad(diffs, (4, 0)))  # [2, 9, V], 4 PAD slots in front
    torch.testing.assert_close(padded[:, 4:], plain, rtol=0, atol=1e-5)
    # ... also when the padding is different per row
    ragged_tokens = torch.tensor([[0, 0, 7, 8, 9], [1, 2, 3, 4, 5]])
    ragged = model(ragged_tokens)
    torch.testing.assert_close(ragged[0, 2:], model(ragged_tokens[:1, 2:])[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_pad_positions_have_zero_states(name):
    model = build(name)
    tokens, diffs = batch()
    hidden = model.encode(tokens, diffs)
    assert (tokens == 0).any()
    assert torch.equal(hidden[tokens == 0], torch.zeros_like(hidden[tokens == 0]))


@pytest.mark.parametrize("name", MODELS)
def test_longer_than_max_seq_len_keeps_the_most_recent_positions(name, caplog):
    model = build(name)
    tokens, diffs = batch(seq_len=MAX_LEN + 5)
    tokens[:, -MAX_LEN:] = tokens[:, -MAX_LEN:].clamp_min(1)
    with caplog.at_level(logging.WARNING):
        logits = model(tokens, diffs)
        model(tokens, diffs)
    assert logits.shape == (3, MAX_LEN + 5, VOCAB)  # still aligned with the input
    recent = model(tokens[:, -MAX_LEN:], diffs[:, -MAX_LEN:])
    torch.testing.assert_close(logits[:, -MAX_LEN:], recent, rtol=0, atol=1e-5)
    pad_logits = model(torch.zeros(1, 1, dtype=torch.long))[0, 0]
    torch.testing.assert_close(logits[:, :5], pad_logits.expand(3, 5, -1), rtol=0, atol=1e-6)
    warnings = [r for r in caplog.records if "max_seq_len" in r.getMessage()]
    assert len(warnings) == 1  # once per model, not once per step


@pytest.mark.parametrize("name", ["hstu", "sasrec", "hllm"])
def test_backward_reaches_every_parameter(name):
    model = MODELS[name]().train()
    tokens, diffs = batch()
    model(tokens, diffs).logsumexp(-1).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing


def test_generative_models_are_registered_and_pass_the_model_sweep():
    assert {"HSTUModel", "SASRecModel", "HLLMModel"} <= set(list_models("generative"))
    for name in list_models("generative"):
        sweep.test_model_forward_backward(name)


# -- HSTU specifics -----------------------------------------------------------------------------------
def naive_hstu_layer(layer: HSTULayer, x, real, time_diffs):
    """Paper Eq. 2-4 written out directly, one (query, key) pair formula at a time."""
    b, n, _ = x.shape
    h, dqk, dv = layer.n_heads, layer.dqk, layer.dv
    uvqk = F.silu(layer.proj1(layer.norm_in(x)))
    q, k, u, v = uvqk.split([h * dqk, h * dqk, h * dv, h * dv], -1)
    q, k, v = q.view(b, n, h, dqk), k.view(b, n, h, dqk), v.view(b, n, h, dv)
    out = torch.zeros(b, n, h, dv)
    rab = layer.rab
    for bi in range(b):
        for i in range(n):
            for j in range(i + 1):
                if not real[bi, j]:
                    continue
                dt = abs(float(time_diffs[bi, i] - time_diffs[bi, j])) / 60.0
                bucket = min(max(int(math.sqrt(max(dt, 1e-6))), 0), rab.num_time_buckets)
                bias = rab.pos_w[j - i + rab.max_seq_len - 1] + rab.ts_w[bucket]  # [H]
                score = (q[bi, i] * k[bi, j]).sum(-1) / math.sqrt(dqk) + bias
                out[bi, i] += (F.silu(score) / layer.max_seq_len).unsqueeze(-1) * v[bi, j]
    return layer.proj2(layer.norm_attn(out.reshape(b, n, h * dv)) * u)


def test_hstu_layer_matches_the_paper_formula():
    torch.manual_seed(0)
    layer = HSTULayer(d_model=8, n_heads=2, dqk=4, dv=3, dropout=0.0, max_seq_len=6, num_time_buckets=10).eval()
    x = torch.randn(2, 5, 8)
    real = torch.tensor([[False, True, True, True, True], [True, True, True, True, True]])
    diffs = torch.tensor([[0, 9000, 4000, 600, 0], [5000, 4000, 3000, 100, 0]])
    with torch.no_grad():
        torch.testing.assert_close(layer(x, padding_mask=real, time_diffs=diffs),
                                   naive_hstu_layer(layer, x, real, diffs), rtol=1e-4, atol=1e-5)


def test_joint_and_separate_bias_tables_agree(monkeypatch):
    torch.manual_seed(0)
    block = HSTUBlock(d_model=8, n_heads=2, n_layers=2, dqk=4, dv=4, dropout=0.0, max_seq_len=6, num_time_buckets=10)
    x = torch.randn(2, 6, 8)
    real = torch.ones(2, 6, dtype=torch.bool)
    diffs = torch.randint(0, 100_000, (2, 6))

    def run():
        block.zero_grad()
        out = block(x, padding_mask=real, time_diffs=diffs)
        out.square().sum().backward()
        return out.detach(), [p.grad.clone() for p in block.parameters()]

    joint = run()
    monkeypatch.setattr(hstu_nn, "MAX_JOINT_TABLE", 0)
    separate = run()
    torch.testing.assert_close(separate[0], joint[0])
    for a, b in zip(separate[1], joint[1]):
        torch.testing.assert_close(a, b)


def test_rab_matches_its_definition_and_clamps_long_distances():
    rab = RelativeBucketedTimeAndPositionBias(n_heads=3, max_seq_len=4, num_time_buckets=5)
    diffs = torch.tensor([[0, 3600, 60 * 60 * 24]])
    bias = rab(time_diffs=diffs)  # [1, 3, 3, 3]
    for i in range(3):
        for j in range(3):
            dt = abs(int(diffs[0, i] - diffs[0, j])) / 60.0
            bucket = min(int(math.sqrt(max(dt, 1e-6))), 5)
            torch.testing.assert_close(bias[0, :, i, j], rab.pos_w[j - i + 3] + rab.ts_w[bucket])
    position_only = rab(seq_len=6)  # longer than max_seq_len: distances beyond 3 share the end slots
    assert position_only.shape == (1, 3, 6, 6)
    torch.testing.assert_close(position_only[0, :, 5, 0], rab.pos_w[0])
    torch.testing.assert_close(position_only[0, :, 0, 5], rab.pos_w[-1])
    with pytest.raises(ValueError, match="time_diffs.*seq_len"):
        rab()


@pytest.mark.parametrize("fn,unit,divisor,seconds,expected", [
    ("sqrt", "minutes", 1.0, [0, 59, 60, 3600, 10**9], [0, 0, 1, 7, 15]),
    ("sqrt", "seconds", 1.0, [0, 3, 4, 225, -100], [0, 1, 2, 15, 0]),
    ("sqrt", "seconds", 4.0, [15, 16, 400], [0, 1, 5]),
    ("log", "minutes", 1.0, [60, 60 * 3, 60 * 8, 60 * 100000], [0, 1, 2, 11]),
])
def test_time_buckets(fn, unit, divisor, seconds, expected):
    assert bucketize_time(torch.tensor(seconds), 15, fn, divisor, unit).tolist() == expected


def test_time_differences_reach_the_logits_and_none_means_zeros():
    model = build("hstu")
    tokens, diffs = batch()
    assert not torch.allclose(model(tokens, diffs), model(tokens, diffs * 50))
    torch.testing.assert_close(model(tokens), model(tokens, torch.zeros_like(diffs)))
    # without the input-side time embedding, no time differences means a position-only bias
    plain = hstu(use_time_embedding=False).eval()
    assert not hasattr(plain, "time_embedding")
    assert not torch.allclose(plain(tokens), plain(tokens, diffs))


def test_hstu_output_head_options():
    tied = build("hstu")
    assert tied.output_projection is None and tied.item_embeddings is tied.token_embedding.weight
    assert torch.equal(tied.token_embedding.weight[0], torch.zeros(DIM))
    untied = hstu(tie_embeddings=False, use_output_bias=False)
    assert untied.item_embeddings is untied.output_projection.weight and untied.output_projection.bias is None
    cosine = hstu(score_norm="l2", temperature=0.1, use_output_bias=False).eval()
    logits = cosine(*batch())
    assert logits.abs().max() <= 10.0 + 1e-4  # |cos| / 0.1


# -- SASRec and HLLM specifics ------------------------------------------------------------------------
def test_sasrec_ignores_time_and_shares_hstu_argument_names():
    model = build("sasrec")
    tokens, diffs = batch()
    torch.testing.assert_close(model(tokens, diffs), model(tokens))
    shared = dict(vocab_size=VOCAB, d_model=DIM, n_heads=2, n_layers=1, max_seq_len=MAX_LEN, dropout=0.0,
                  tie_embeddings=False, score_norm="l2", temperature=0.5, use_output_bias=False,
                  scale_input_embedding=True, l2_norm_eps=1e-6)
    HSTUModel(**shared), SASRecModel(**shared)  # one model-name change


def test_hllm_table_is_frozen_normalised_and_logits_are_cosine_over_temperature():
    model = build("hllm")
    assert "item_embeddings" in dict(model.named_buffers())
    assert all(p is not model.item_embeddings for p in model.parameters())
    norms = model.item_embeddings.norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones(VOCAB))
    tokens, diffs = batch()
    hidden = model.encode(tokens, diffs)
    expected = F.cosine_similarity(hidden.unsqueeze(-2), model.item_embeddings, dim=-1, eps=1e-8) / 0.07
    real = tokens != 0
    torch.testing.assert_close(model(tokens, diffs)[real], expected[real], rtol=1e-4, atol=1e-4)
    assert model(tokens, diffs).abs().max() <= 1 / 0.07 + 1e-4


def test_hllm_loads_item_embeddings_from_files_without_pickled_code(tmp_path):
    from safetensors.torch import save_file

    table = torch.randn(VOCAB, DIM)
    torch.save(table, tmp_path / "emb.pt")
    torch.save({"item_embeddings": table, "ids": torch.arange(VOCAB)}, tmp_path / "dict.pt")
    save_file({"embeddings": table}, str(tmp_path / "emb.safetensors"))
    for name in ("emb.pt", "dict.pt", "emb.safetensors"):
        assert torch.equal(load_item_embeddings(tmp_path / name), table)
        model = HLLMModel(str(tmp_path / name), VOCAB, d_model=DIM, n_heads=2, n_layers=1, max_seq_len=4)
        torch.testing.assert_close(model.item_embeddings, F.normalize(table, dim=-1))
    torch.save({"a": table, "b": table}, tmp_path / "two.pt")
    with pytest.raises(ValueError, match="several tensors"):
        load_item_embeddings(tmp_path / "two.pt")
    torch.save(Exploit(), tmp_path / "code.pt")
    with pytest.raises(Exception, match="(?i)weights_only|unpickl"):
        load_item_embeddings(tmp_path / "code.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_item_embeddings(tmp_path / "missing.pt")


class Exploit:
    """An object whose unpickling would run code (torch.load(weights_only=True) refuses it)."""

    def __reduce__(self):
        return (print, ("unpickled!",))


def test_hllm_loads_torch_rechub_style_separate_projections():
    source = build("hllm")
    state = {}
    for key, value in source.state_dict().items():
        if ".qkv." in key:  # split into upstream's W_Q / W_K / W_V
            for part, chunk in zip("QKV", value.chunk(3, dim=0)):
                state[key.replace(".qkv.", f".W_{part}.")] = chunk
        else:
            state[key.replace(".out.", ".W_O.")] = value
    target = hllm()
    target.load_state_dict(state)
    tokens, diffs = batch()
    torch.testing.assert_close(target.eval()(tokens, diffs), source(tokens, diffs))


# -- VocabMask ----------------------------------------------------------------------------------------
def test_vocab_mask_fixed_and_per_row_ids():
    mask = VocabMask(6, invalid_items=[0, 4, 99, -1])
    logits = torch.arange(12, dtype=torch.float).view(2, 6)
    masked = mask.apply_mask(logits)
    assert masked[:, [0, 4]].eq(-1e9).all() and torch.equal(masked[:, [1, 2, 3, 5]], logits[:, [1, 2, 3, 5]])
    assert logits[0, 0] == 0  # a copy, the input is untouched
    history = torch.tensor([[2, 3], [5, 17]])  # 17 is out of range: lands on PAD, never an index error
    rows = mask.apply_mask(logits, history)
    assert rows[0, 2] == rows[0, 3] == rows[1, 5] == -1e9
    assert rows[0, 1] == 1 and rows[1, 2] == 8
    every_row = mask.apply_mask(logits, torch.tensor([1]))
    assert (every_row[:, 1] == -1e9).all()
    assert mask.apply_mask(torch.zeros(2, 3, 6)).shape == (2, 3, 6)  # fixed ids on any leading shape
    with pytest.raises(ValueError, match=r"logits \[B, V\]"):
        mask.apply_mask(torch.zeros(2, 3, 6), history)
    with pytest.raises(ValueError, match="3 rows"):
        mask.apply_mask(logits, torch.zeros(3, 2, dtype=torch.long))


# -- bad input ----------------------------------------------------------------------------------------
def test_errors_name_what_is_wrong():
    with pytest.raises(ValueError, match=r"d_model \(30\).*n_heads \(4\)"):
        HSTUModel(50, d_model=30, n_heads=4)
    with pytest.raises(ValueError, match=r"d_model \(30\).*n_heads \(4\)"):
        SASRecModel(50, d_model=30, n_heads=4)
    with pytest.raises(ValueError, match=r"d_model \(30\).*n_heads \(4\)"):
        HLLMModel(torch.randn(50, 30), 50, d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="time_bucket_fn: 'cbrt'"):
        hstu(time_bucket_fn="cbrt")
    with pytest.raises(ValueError, match="time_bucket_unit: 'hours'"):
        hstu(time_bucket_unit="hours")
    with pytest.raises(ValueError, match="score_norm must be 'none' or 'l2', got 'cosine'"):
        hstu(score_norm="cosine")
    with pytest.raises(ValueError, match="temperature must be positive"):
        sasrec(temperature=0.0)
    model = build("hstu")
    with pytest.raises(ValueError, match=f"item id 45 but vocab_size is {VOCAB}"):
        model(torch.tensor([[0, 3, 45, 7]]))
    with pytest.raises(ValueError, match="negative item id"):
        model(torch.tensor([[-1, 3]]))
    with pytest.raises(TypeError, match="integer item ids"):
        model(torch.tensor([[1.0, 3.0]]))
    with pytest.raises(ValueError, match="shape of seq_tokens"):
        model(torch.tensor([[1, 3]]), torch.tensor([[1, 3, 4]]))
    with pytest.raises(ValueError, match=r"\[batch, seq_len\]"):
        model(torch.tensor([1, 3]))
    with pytest.raises(KeyError, match="seq_tokens"):
        model({"tokens": torch.tensor([[1, 3]])})
