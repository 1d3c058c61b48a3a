"""Torch-RecHub 0.9.0's tests/test_tiger_example.py with imports rewritten for trainhub, parity
checks against upstream itself (its own venv), and TIGER on a tiny local T5 (no downloads).

Import mapping: ``torch_rechub.utils.data`` (``TigerSeqDataset``, ``Trie``, ``EmbDataset``) ->
``trainhub.data``; ``torch_rechub.models.generative.tiger`` -> ``trainhub.models.generative.tiger``;
``torch_rechub.models.generative.rqvae`` -> ``trainhub.models.generative.rqvae``;
``torch_rechub.trainers.rqvae_trainer`` -> ``trainhub.trainers.rqvae_trainer``.

Not ported: upstream's four tests of its example script ``examples/generative/run_tiger_movielens.py``
(toy-data writer, ``ratings.dat`` preparation, an end-to-end run that downloads ``t5-small``):
they test the example, not the library. The end-to-end run is replaced by one on a local tokenizer
and a tiny T5 trained by trainhub's engine.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from trainhub.data import TigerSeqDataset, Trie
from trainhub.data.semantic import SemanticIDTokenizer
from trainhub.models.generative.rqvae import ResidualVectorQuantizer, sinkhorn_algorithm

REPO = Path(__file__).resolve().parents[2]
RECHUB_PYTHON = REPO / "bench" / ".rechub-venv" / "bin" / "python"

# Upstream's toy data: 5 items per user, 2 levels per semantic ID.
INTERS = {"u0": [1, 2, 3, 4, 5], "u1": [2, 3, 4, 5, 6]}
INDICES = {
    "1": ["<a_0>", "<b_0>"],
    "2": ["<a_0>", "<b_1>"],
    "3": ["<a_1>", "<b_0>"],
    "4": ["<a_1>", "<b_1>"],
    "5": ["<a_2>", "<b_0>"],
    "6": ["<a_2>", "<b_1>"],
}


class StubTokenizer:
    """Upstream's stand-in for a T5 tokenizer: each ``<x_y>`` token gets the next free id (from 1),
    no EOS; only what the collate function calls."""

    pad_token_id = 0
    model_max_length = 64

    def __init__(self):
        self.vocab: dict[str, int] = {}

    def _ids(self, text):
        return [self.vocab.setdefault(tok, len(self.vocab) + 1) for tok in re.findall(r"<[^>]*>", text)]

    def __call__(self, texts, return_tensors=None, padding=None, max_length=None, truncation=None,
                 return_attention_mask=None):
        rows = [self._ids(t) for t in texts]
        width = max((len(r) for r in rows), default=0)
        if max_length is not None and truncation:
            width = min(width, max_length)
        rows = [r[:width] for r in rows]
        ids = [r + [self.pad_token_id] * (width - len(r)) for r in rows]
        mask = [[1] * len(r) + [0] * (width - len(r)) for r in rows]
        return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}


# -- upstream's tests ------------------------------------------------------------------------------
def test_train_mode_expands_history_prefixes():
    data = TigerSeqDataset(INTERS, INDICES, max_his_len=20, mode="train")
    assert len(data) == 4  # items[:-2] keeps 3 items: 2 samples per user
    assert data[0]["input_ids"] == "<a_0><b_0>"
    assert data[0]["labels"] == "<a_0><b_1>"


def test_valid_and_test_modes_use_holdout_targets():
    valid = TigerSeqDataset(INTERS, INDICES, max_his_len=20, mode="valid")
    test = TigerSeqDataset(INTERS, INDICES, max_his_len=20, mode="test")
    assert len(valid) == 2 and len(test) == 2
    assert valid[0]["labels"] == "<a_1><b_1>"
    assert test[0]["labels"] == "<a_2><b_0>"
    assert test[0]["input_ids"] == "<a_0><b_0><a_0><b_1><a_1><b_0><a_1><b_1>"


def test_max_his_len_truncates_history():
    assert TigerSeqDataset(INTERS, INDICES, max_his_len=1, mode="test")[0]["input_ids"] == "<a_1><b_1>"


def test_get_new_tokens_is_sorted_unique():
    data = TigerSeqDataset(INTERS, INDICES, max_his_len=20, mode="train")
    assert data.get_new_tokens() == ["<a_0>", "<a_1>", "<a_2>", "<b_0>", "<b_1>"]


def test_get_all_items_returns_joined_semantic_ids():
    items = TigerSeqDataset(INTERS, INDICES, max_his_len=20, mode="train").get_all_items()
    assert "<a_0><b_0>" in items and len(items) == 6


def test_collate_masks_pad_label_positions():
    data = TigerSeqDataset(INTERS, INDICES, max_his_len=20, mode="train")
    out = data.get_collate_fn(StubTokenizer())([
        {"input_ids": "<a_0><b_0>", "labels": "<a_0>"},
        {"input_ids": "<a_0><b_0><a_1>", "labels": "<a_0><b_1><c_2>"},
    ])
    assert out["input_ids"].shape == (2, 3)
    assert out["attention_mask"][0].tolist() == [1, 1, 0]
    assert out["labels"].shape == (2, 3)
    assert out["labels"][0].tolist()[1:] == [-100, -100]
    assert (out["labels"] == 0).sum().item() == 0


def test_trie_constrains_next_tokens():
    trie = Trie([[0, 10, 20], [0, 10, 21], [0, 11, 30]])
    assert sorted(trie.get([0, 10])) == [20, 21]
    assert sorted(trie.get([0])) == [10, 11]
    assert len(trie) == 3


# -- parity with Torch-RecHub 0.9.0 ----------------------------------------------------------------
UPSTREAM = r"""
import json, sys, torch
from torch_rechub.utils.data import TigerSeqDataset, Trie
from torch_rechub.models.generative.rqvae import ResidualVectorQuantizer, sinkhorn_algorithm
inters, indices, weights = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), torch.load(sys.argv[3])
out = {}
for mode in ("train", "valid", "test"):
    data = TigerSeqDataset(inters, indices, 3, mode=mode)
    out[mode] = [data[i] for i in range(len(data))]
data = TigerSeqDataset(inters, indices, 3)
out["new_tokens"] = data.get_new_tokens()
out["all_items"] = sorted(data.get_all_items())
trie = Trie([[0, 3, 5, 1], [0, 3, 6, 1], [0, 4, 5, 1]])
out["trie"] = [sorted(trie.get(p)) for p in ([0], [0, 3], [0, 4], [0, 4, 5], [0, 9])]
rq = ResidualVectorQuantizer([6, 6], 4, sk_epsilons=[0.0, 0.003], sk_iters=50)
rq.load_state_dict(weights["rq"])
x = weights["x"]
for use_sk in (False, True):
    x_q, loss, idx = rq(x, use_sk=use_sk)
    out[f"rq_{use_sk}"] = [x_q.tolist(), float(loss), idx.tolist()]
out["sinkhorn"] = sinkhorn_algorithm(weights["d"], 0.05, 30).tolist()
json.dump(out, open(sys.argv[4], "w"))
"""


def _toy_log(num_users=12, num_items=16, seed=0):
    """Upstream's example toy data: 3-level IDs (codebooks of 8) and a +1 walk over item ids."""
    rng = random.Random(seed)
    indices = {str(i): [f"<a_{(i - 1) // 64}>", f"<b_{(i - 1) // 8 % 8}>", f"<c_{(i - 1) % 8}>"]
               for i in range(1, num_items + 1)}
    inters = {}
    for user in range(num_users):
        length, start = rng.randint(6, 12), rng.randint(1, num_items)
        inters[str(user)] = [(start - 1 + step) % num_items + 1 for step in range(length)]
    return inters, indices


@pytest.mark.skipif(not RECHUB_PYTHON.exists(), reason="needs Torch-RecHub's venv (bench/.rechub-venv)")
def test_sequences_trie_and_quantizer_match_torch_rechub(tmp_path):
    inters, indices = _toy_log()
    torch.manual_seed(0)
    rq = ResidualVectorQuantizer([6, 6], 4, sk_epsilons=[0.0, 0.003], sk_iters=50)
    x, d = torch.randn(20, 4), torch.rand(10, 4).double()
    (tmp_path / "inters.json").write_text(json.dumps(inters))
    (tmp_path / "indices.json").write_text(json.dumps(indices))
    torch.save({"rq": rq.state_dict(), "x": x, "d": d}, tmp_path / "w.pt")
    done = subprocess.run([str(RECHUB_PYTHON), "-c", UPSTREAM, *(str(tmp_path / f) for f in
                           ("inters.json", "indices.json", "w.pt", "up.json"))],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    up = json.loads((tmp_path / "up.json").read_text())
    for mode in ("train", "valid", "test"):
        data = TigerSeqDataset(inters, indices, 3, mode=mode)
        assert [data[i] for i in range(len(data))] == up[mode]
    data = TigerSeqDataset(inters, indices, 3)
    assert data.get_new_tokens() == up["new_tokens"] and sorted(data.get_all_items()) == up["all_items"]
    trie = Trie([[0, 3, 5, 1], [0, 3, 6, 1], [0, 4, 5, 1]])
    assert [sorted(trie.get(p)) for p in ([0], [0, 3], [0, 4], [0, 4, 5], [0, 9])] == up["trie"]
    for use_sk in (False, True):
        x_q, loss, idx = rq(x, use_sk=use_sk)
        up_xq, up_loss, up_idx = up[f"rq_{use_sk}"]
        assert idx.tolist() == up_idx
        torch.testing.assert_close(x_q, torch.tensor(up_xq))
        assert loss.item() == pytest.approx(up_loss, rel=1e-5)
    torch.testing.assert_close(sinkhorn_algorithm(d, 0.05, 30), torch.tensor(up["sinkhorn"], dtype=torch.float64))


# -- TIGER on a tiny local T5 ----------------------------------------------------------------------
def test_importing_the_generative_package_does_not_import_transformers():
    code = ("import sys, trainhub.models.generative, trainhub.models.generative.rqvae, trainhub.data, "
            "trainhub.tasks.rqvae, trainhub.tasks.tiger, trainhub.trainers.rqvae_trainer; "
            "print('transformers' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


@pytest.fixture
def tiger_setup():
    pytest.importorskip("transformers")
    from trainhub.models.generative.tiger import TIGERModel, tiger_config

    inters, indices = _toy_log()
    train = TigerSeqDataset(inters, indices, max_his_len=20, mode="train")
    valid = TigerSeqDataset(inters, indices, max_his_len=20, mode="valid")
    tokenizer = SemanticIDTokenizer(train.get_new_tokens())
    torch.manual_seed(0)
    config = tiger_config(tokenizer, d_model=16, d_ff=32, d_kv=8, num_heads=2, num_layers=1, dropout_rate=0.0)
    return TIGERModel(config), tokenizer, train, valid


def test_temperature_scales_the_loss(tiger_setup):
    from transformers import T5ForConditionalGeneration

    model, tokenizer, train, _ = tiger_setup
    batch = train.get_collate_fn(tokenizer)([train[i] for i in range(4)])
    plain = T5ForConditionalGeneration(model.config)
    plain.load_state_dict(model.state_dict())
    model.eval(), plain.eval()
    torch.testing.assert_close(model(**batch).loss, plain(**batch).loss)
    model.set_hyper(2.0)
    out = model(**batch)
    want = torch.nn.functional.cross_entropy((out.logits / 2).flatten(0, 1), batch["labels"].flatten(),
                                             ignore_index=-100)
    torch.testing.assert_close(out.loss, want)
    assert model(**batch, return_dict=False)[0].item() == pytest.approx(want.item())
    with pytest.raises(ValueError, match="temperature must be positive"):
        model.set_hyper(0)


def test_constrained_beam_search_never_generates_a_non_item(tiger_setup):
    from trainhub.tasks.tiger import TIGERTask

    model, tokenizer, train, valid = tiger_setup
    task = TIGERTask.from_dataset(valid, tokenizer, num_beams=6, ks=(1, 6))
    batch = valid.get_collate_fn(tokenizer)([valid[i] for i in range(3)])
    model.eval()
    out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], num_beams=6,
                         num_return_sequences=6, max_new_tokens=task.max_new_tokens, early_stopping=True,
                         prefix_allowed_tokens_fn=task._allowed, output_scores=True, return_dict_in_generate=True)
    items = valid.get_all_items()
    finite = torch.isfinite(out.sequences_scores)
    assert finite.all()
    assert {tokenizer.decode(s, skip_special_tokens=True) for s in out.sequences} <= items
    top = task.generate(model, batch["input_ids"], batch["attention_mask"])
    assert top.shape == (3, 6) and (top >= 0).all()
    assert all(len(set(row)) == 6 for row in top.tolist())  # six different items per user


def test_bad_beam_settings_are_clear_errors(tiger_setup):
    from trainhub.tasks.tiger import TIGERTask

    _, tokenizer, _, valid = tiger_setup
    with pytest.raises(ValueError, match="num_beams=17 is larger than the 16 distinct items"):
        TIGERTask.from_dataset(valid, tokenizer, num_beams=17, ks=(1,))
    with pytest.raises(ValueError, match="K=10 in ks is larger than num_beams=5"):
        TIGERTask.from_dataset(valid, tokenizer, num_beams=5, ks=(10,))
    task = TIGERTask.from_dataset(valid, tokenizer, num_beams=5, ks=(5,))
    with pytest.raises(KeyError, match=r"items \['99'\] have no semantic ID"):
        task.recommend(tiger_setup[0], [["1", "99"]], k=5)


def test_tiger_trains_end_to_end_on_the_engine(tiger_setup, tmp_path):
    from trainhub.engine import Checkpointer, EarlyStopping, FitConfig, fit
    from trainhub.models.generative.tiger import TIGERModel
    from trainhub.tasks.tiger import TIGERTask

    model, tokenizer, train, valid = tiger_setup
    collate = train.get_collate_fn(tokenizer)
    task = TIGERTask.from_dataset(valid, tokenizer, num_beams=4, ks=(1, 4))
    result = fit(model, task, torch.optim.AdamW(model.parameters(), lr=1e-2),
                 DataLoader(train, batch_size=16, shuffle=True, collate_fn=collate),
                 DataLoader(valid, batch_size=16, collate_fn=collate),
                 config=FitConfig(max_epochs=2, progress=False), stopper=EarlyStopping("ndcg@4", patience=5),
                 checkpointer=Checkpointer(tmp_path))
    last = result.history[-1]
    assert result.history[1]["train/loss"] < result.history[0]["train/loss"]
    assert {"val/loss", "val/hr@4", "val/ndcg@4", "val/mrr@1"} <= set(last)
    assert 0.0 <= last["val/hr@4"] <= 1.0
    recs = task.recommend(model, [["1", "2", "3"], ["9"]], k=3)
    assert all(len(r) == 3 and set(r) <= set(valid.indices) for r in recs)
    # save and load through transformers, no hub involved
    model.save_pretrained(tmp_path / "tiger")
    tokenizer.save_pretrained(tmp_path / "tiger")
    again = TIGERModel.from_pretrained(tmp_path / "tiger")
    assert SemanticIDTokenizer.from_pretrained(tmp_path / "tiger").id_to_token == tokenizer.id_to_token
    batch = collate([valid[0]])
    model.eval(), again.eval()
    torch.testing.assert_close(again(**batch).logits, model(**batch).logits)
