"""Semantic-ID data: item-embedding files (never unpickled), TIGER sequences from JSON files or
dicts, the semantic-ID tokenizer and the prefix trie."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from trainhub.data.semantic import EmbDataset, SemanticIDTokenizer, TigerSeqDataset, Trie, read_json

INTERS = {"u0": [1, 2, 3, 4, 5], "u1": [2, 3, 4, 5, 6]}
INDICES = {str(i): [f"<a_{(i - 1) // 2}>", f"<b_{(i - 1) % 2}>"] for i in range(1, 7)}


# -- EmbDataset ------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".npy", ".pt", ".safetensors", "tensor"])
def test_emb_dataset_reads_every_format(tmp_path, suffix):
    emb = np.arange(12, dtype=np.float64).reshape(4, 3)
    path = tmp_path / f"emb{suffix}"
    if suffix == ".npy":
        np.save(path, emb)
    elif suffix == ".pt":
        torch.save(torch.from_numpy(emb), path)
    elif suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({"emb": torch.from_numpy(emb)}, str(path))
    data = EmbDataset(torch.from_numpy(emb) if suffix == "tensor" else str(path))
    assert len(data) == 4 and data.dim == 3
    assert data[1].dtype == torch.float32 and data[1].tolist() == [3.0, 4.0, 5.0]
    assert data[[0, 3]].shape == (2, 3)  # fancy indexing, as upstream's generate_semantic_ids uses


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_emb_dataset_never_unpickles(tmp_path):
    objects = np.array([{"a": 1}, None], dtype=object)
    np.save(tmp_path / "obj.npy", objects, allow_pickle=True)
    with pytest.raises(ValueError, match="obj.npy"):
        EmbDataset(str(tmp_path / "obj.npy"))
    with open(tmp_path / "obj.pt", "wb") as f:
        pickle.dump({"payload": object()}, f)
    with pytest.raises(ValueError, match="obj.pt"):
        EmbDataset(str(tmp_path / "obj.pt"))


def test_emb_dataset_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        EmbDataset(str(tmp_path / "missing.npy"))
    (tmp_path / "emb.csv").write_text("1,2\n")
    with pytest.raises(ValueError, match="unsupported embedding format '.csv'"):
        EmbDataset(str(tmp_path / "emb.csv"))
    with pytest.raises(ValueError, match="2-D"):
        EmbDataset(np.zeros(5))
    bad = np.zeros((4, 2))
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"non-finite values in 1 rows \(first: \[2\]\)"):
        EmbDataset(bad)


# -- JSON inputs -----------------------------------------------------------------------------------
def test_read_json_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="inters file .*nope.json does not exist"):
        read_json(str(tmp_path / "nope.json"), "inters")
    broken = tmp_path / "inter.json"
    broken.write_text('{"u0": [1, 2,\n')
    with pytest.raises(ValueError, match=r"inters file .*inter.json is not valid JSON: .* line 2"):
        read_json(str(broken), "inters")


def test_tiger_dataset_reads_json_files_and_int_keys(tmp_path):
    (tmp_path / "inter.json").write_text(json.dumps(INTERS))
    (tmp_path / "ids.json").write_text(json.dumps(INDICES))
    from_files = TigerSeqDataset(str(tmp_path / "inter.json"), tmp_path / "ids.json", max_his_len=20, mode="test")
    int_keys = {int(k): v for k, v in INDICES.items()}  # what generate_semantic_ids returns
    from_dicts = TigerSeqDataset(INTERS, int_keys, max_his_len=20, mode="test")
    assert [from_files[i] for i in range(2)] == [from_dicts[i] for i in range(2)]


def test_tiger_dataset_bad_input_is_a_clear_error(tmp_path):
    (tmp_path / "ids.json").write_text(json.dumps({k: v for k, v in INDICES.items() if k != "4"}))
    with pytest.raises(KeyError, match=r"item 4 of user 'u0' .* has no semantic ID in .*ids.json"):
        TigerSeqDataset(INTERS, str(tmp_path / "ids.json"), max_his_len=20)
    with pytest.raises(ValueError, match="mode must be one of"):
        TigerSeqDataset(INTERS, INDICES, max_his_len=20, mode="eval")
    with pytest.raises(TypeError, match="item '1' maps to '<a_0>'"):
        TigerSeqDataset(INTERS, {"1": "<a_0>"}, max_his_len=20)
    with pytest.raises(ValueError, match="sample_num=3 is more than the 2 test users"):
        TigerSeqDataset(INTERS, INDICES, max_his_len=20, mode="test", sample_num=3)


def test_test_mode_samples_users():
    np.random.seed(0)
    data = TigerSeqDataset(INTERS, INDICES, max_his_len=20, mode="test", sample_num=1)
    assert len(data) == 1 and data[0]["labels"] in {"<a_2><b_0>", "<a_2><b_1>"}


def test_short_users_are_skipped_not_crashed():
    data = TigerSeqDataset({"a": [1], "b": [1, 2, 3]}, INDICES, max_his_len=5, mode="valid")
    assert len(data) == 1 and data[0]["labels"] == "<a_0><b_1>"


def test_get_all_items_as_list_keeps_order():
    data = TigerSeqDataset(INTERS, INDICES, max_his_len=20)
    assert data.get_all_items() == set(data.get_all_items(as_list=True))
    assert data.get_all_items(as_list=True)[:2] == ["<a_0><b_0>", "<a_0><b_1>"]


# -- tokenizer -------------------------------------------------------------------------------------
def test_tokenizer_follows_t5_conventions():
    tok = SemanticIDTokenizer(["<a_0>", "<a_1>", "<b_0>"])
    assert (tok.pad_token_id, tok.eos_token_id, tok.decoder_start_token_id, len(tok)) == (0, 1, 0, 6)
    assert tok.encode("<a_1><b_0>") == [4, 5, 1]
    assert tok("<a_0>")["input_ids"] == [3, 1]
    out = tok(["<a_0>", "<a_1> <b_0>"], return_tensors="pt", padding="longest")
    assert out["input_ids"].tolist() == [[3, 1, 0], [4, 5, 1]]
    assert out["attention_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]
    assert tok.decode([4, 5, 1, 0], skip_special_tokens=True) == "<a_1><b_0>"
    assert tok.batch_decode(torch.tensor([[3, 1]]), skip_special_tokens=False) == ["<a_0></s>"]


def test_tokenizer_truncates_the_oldest_history_and_keeps_eos():
    tok = SemanticIDTokenizer(["<a_0>", "<a_1>", "<b_0>"], model_max_length=3)
    ids = tok(["<a_0><a_1><b_0>"], truncation=True, padding=True)["input_ids"][0]
    assert ids == [4, 5, 1]


def test_tokenizer_rejects_tokens_of_another_table(tmp_path):
    tok = SemanticIDTokenizer(["<a_0>"])
    with pytest.raises(KeyError, match="'<a_9>' is not in this tokenizer's vocabulary"):
        tok.encode("<a_9>")
    with pytest.raises(ValueError, match="not a string of semantic-ID tokens"):
        tok.encode("hello <a_0>")
    with pytest.raises(ValueError, match="look like"):
        SemanticIDTokenizer(["a_0"])
    tok.save_pretrained(tmp_path)
    assert SemanticIDTokenizer.from_pretrained(tmp_path).id_to_token == tok.id_to_token
    with pytest.raises(FileNotFoundError, match="no semantic-ID vocabulary"):
        SemanticIDTokenizer.from_pretrained(tmp_path / "other")


def test_collate_with_the_tokenizer_ends_labels_with_eos():
    data = TigerSeqDataset(INTERS, INDICES, max_his_len=20, mode="train")
    tok = SemanticIDTokenizer(data.get_new_tokens())
    batch = data.get_collate_fn(tok)([data[0], data[1]])
    assert set(batch) == {"input_ids", "attention_mask", "labels"} and isinstance(batch, dict)
    assert batch["labels"][:, -1].tolist() == [tok.eos_token_id] * 2


# -- trie and constraints --------------------------------------------------------------------------
def test_trie_only_allows_existing_continuations():
    trie = Trie([[0, 10, 20, 1], [0, 10, 21, 1], [0, 11, 30, 1]])
    assert sorted(trie.get([0])) == [10, 11]
    assert sorted(trie.get([0, 10])) == [20, 21]
    assert trie.get([0, 11]) == [30] and trie.get([0, 11, 30]) == [1]
    assert trie.get([0, 12]) == [] and trie.get([0, 11, 30, 1]) == []
    assert sorted(trie) == [[0, 10, 20, 1], [0, 10, 21, 1], [0, 11, 30, 1]]
    assert len(Trie.load_from_dict(trie.trie_dict)) == 3
    fn = trie.def_prefix_allowed_tokens_fn(trie)
    assert sorted(fn(0, torch.tensor([0, 10]))) == [20, 21]


def test_trie_append_chains_a_second_trie():
    first, second = Trie([[5, 9]]), Trie([[7, 8]])
    first.append(second, bos_token_id=9)
    assert first.get([5]) == [7]
    assert first.get([7]) == [8]


def test_item_trie_spells_every_item_and_nothing_else():
    data = TigerSeqDataset(INTERS, INDICES, max_his_len=20)
    tok = SemanticIDTokenizer(data.get_new_tokens())
    trie = data.item_trie(tok)
    spelled = {tok.decode(seq, skip_special_tokens=True) for seq in trie}
    assert spelled == data.get_all_items()


def test_prefix_allowed_tokens_fn_follows_levels():
    data = TigerSeqDataset(INTERS, INDICES, max_his_len=20)
    tok = SemanticIDTokenizer(data.get_new_tokens())
    fn = data.get_prefix_allowed_tokens_fn(tok)
    level_a = sorted(tok.convert_tokens_to_ids(["<a_0>", "<a_1>", "<a_2>"]))
    level_b = sorted(tok.convert_tokens_to_ids(["<b_0>", "<b_1>"]))
    assert fn(0, torch.tensor([0])) == level_a
    assert fn(0, torch.tensor([0, level_a[0]])) == level_b
    assert fn(0, torch.tensor([0, level_a[0], level_b[0]])) == [tok.eos_token_id]
