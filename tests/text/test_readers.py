"""File readers and char-span -> IOB2 conversion, including the upstream sample files."""

from __future__ import annotations

import logging

import pytest

from trainhub.text.readers import char_spans_to_iob2, infer_format, read_rows, split_words

from .conftest import JENGA


def test_jsonl_skips_blank_lines_and_names_bad_line(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('\n{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n', encoding="utf-8")
    rows = read_rows(path)
    assert [r["text"] for r in rows] == ["a", "b"] and rows[0]["_row"] == 2
    path.write_text('{"text": "a"}\n{"text": \n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"a\.jsonl, line 2: invalid JSON"):
        read_rows(path)


def test_json_array_and_squad_rejected(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[{"text": "x", "label": 1}, {"text": "y", "label": 0}]', encoding="utf-8")
    assert [r["label"] for r in read_rows(path)] == [1, 0]
    path.write_text('{"data": []}', encoding="utf-8")
    with pytest.raises(ValueError, match="JSON array"):
        read_rows(path)


def test_csv_with_quotes_and_space_after_comma(tmp_path):
    path = tmp_path / "n.csv"
    path.write_text('text,labels\n"Jina langu, John", "O O B-PER"\n', encoding="utf-8")
    rows = read_rows(path)
    assert rows == [{"text": "Jina langu, John", "labels": "O O B-PER", "_row": 2}]


def test_tsv_without_quote_handling(tmp_path):
    path = tmp_path / "s.tsv"
    path.write_text('tweet\tlabel\nhe said "wow\tpositive\nmbaya sana\tnegative\n', encoding="utf-8")
    rows = read_rows(path)
    assert rows[0]["tweet"] == 'he said "wow' and rows[1]["label"] == "negative"


def test_conll_sentences_and_docstart(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("-DOCSTART- O\n\nRais O\nRuto B-PER\n\n\nNairobi B-LOC\n.  O\n", encoding="utf-8")
    rows = read_rows(path)
    assert [r["words"] for r in rows] == [["Rais", "Ruto"], ["Nairobi", "."]]
    assert [r["tags"] for r in rows] == [["O", "B-PER"], ["B-LOC", "O"]]
    path.write_text("lonely\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 1: expected 'token TAG'"):
        read_rows(path)


def test_format_inference_errors(tmp_path):
    assert infer_format("x.tsv") == "tsv" and infer_format("x.bin", "jsonl") == "jsonl"
    with pytest.raises(ValueError, match="set the task's `format`"):
        infer_format("x.parquet")
    with pytest.raises(FileNotFoundError, match="data file not found"):
        read_rows(tmp_path / "missing.jsonl")


def test_char_spans_to_iob2_exact():
    text = "Rais wa Kenya ni William Ruto."
    words, tags, offsets = char_spans_to_iob2(text, [{"start": 17, "end": 29, "label": "PER"},
                                                     {"start": 8, "end": 13, "label": "LOC"}])
    assert words == ["Rais", "wa", "Kenya", "ni", "William", "Ruto", "."]
    assert tags == ["O", "O", "B-LOC", "O", "B-PER", "I-PER", "O"]
    assert offsets[4] == (17, 24)
    assert split_words("'Shadow Syndicate'")[1] == ("Shadow", 1, 7)


def test_wrong_offsets_keep_only_whole_words_and_warn(caplog):
    text = "Jina langu ni John Doe na ninaishi Nairobi"
    with caplog.at_level(logging.WARNING, logger="trainhub.text.readers"):
        _, tags, _ = char_spans_to_iob2(text, [{"start": 13, "end": 21, "label": "PER"},
                                               {"start": 34, "end": 41, "label": "LOC"},
                                               {"start": 50, "end": 60, "label": "ORG"}], where="f.jsonl, row 1")
    # ' John Do' covers "John" completely and cuts "Doe": only "John" is tagged (never grown outward);
    # ' Nairob' covers no whole word: dropped.
    assert tags == ["O", "O", "O", "B-PER", "O", "O", "O", "O"]
    msgs = [r.getMessage() for r in caplog.records]
    assert any("f.jsonl, row 1" in m and "' John Do'" in m and "'John'" in m and "['Doe']" in m for m in msgs)
    assert any("f.jsonl, row 1" in m and "' Nairob' covers no whole word; skipped" in m for m in msgs)
    assert any("outside the text" in m for m in msgs)


def test_spans_never_snap_outward_to_words_they_only_touch(caplog):
    with caplog.at_level(logging.WARNING, logger="trainhub.text.readers"):
        _, tags, _ = char_spans_to_iob2("Kampuni ya Safaricom ilitangaza faida kubwa",
                                        [{"start": 12, "end": 22, "label": "ORG"}], where="r.jsonl, row 3")
        _, kicc, _ = char_spans_to_iob2("Mkutano utafanyika katika jengo la KICC",
                                        [{"start": 32, "end": 36, "label": "LOC"}], where="r.jsonl, row 4")
        _, padded, _ = char_spans_to_iob2("ni Nairobi .", [{"start": 2, "end": 11, "label": "LOC"}])
    assert tags == ["O"] * 6  # 'afaricom i' is not "Safaricom ilitangaza"
    assert kicc[-1] == "O"  # 'la K' is not "la KICC"
    assert padded == ["O", "B-LOC", "O"]  # spaces around a word are no reason to warn
    assert len(caplog.records) == 2 and "r.jsonl, row 3" in caplog.records[0].getMessage()


def test_conll_with_inconsistent_columns_names_the_line(tmp_path):
    path = tmp_path / "d.conll"
    path.write_text("Rais O\nRuto B-PER\n\nJohn B-PER extra\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"d\.conll, line 4: 3 columns \('John B-PER extra'\), but line 1 has 2"):
        read_rows(path)
    path.write_text("EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n", encoding="utf-8")  # CoNLL-2003: tag last
    assert read_rows(path)[0]["tags"] == ["B-ORG", "O"]


@pytest.mark.skipif(not JENGA.is_dir(), reason="../shared/data/text/jenga_ai_samples is absent")
def test_upstream_ner_sample_warns_for_three_rows_only(caplog):
    from trainhub.text.config import HeadConfig, TaskConfig
    from trainhub.text.processing import rows_to_examples

    path = JENGA / "examples__ner_data.jsonl"
    task = TaskConfig(name="ner", type="ner", data_path=str(path), heads=[HeadConfig(name="ner_head")])
    with caplog.at_level(logging.WARNING, logger="trainhub.text.readers"):
        examples = rows_to_examples(read_rows(path), task, str(path))
    warned_rows = {m.split("row ")[1].split(":")[0] for m in (r.getMessage() for r in caplog.records)}
    assert warned_rows == {"1", "3", "4"}  # only "William Ruto" (row 2) has correct offsets
    assert all(str(path) in r.getMessage() for r in caplog.records)
    assert examples[1]["labels"]["ner_head"] == ["O", "O", "O", "O", "B-PER", "I-PER"]
    assert examples[0]["labels"]["ner_head"][3:5] == ["B-PER", "O"]  # ' John Do': the whole word "John" only
