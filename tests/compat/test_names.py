"""Every name Torch-RecHub 0.9.0's published examples and tests import exists where README's
porting table sends it, and the table in README is the one bench/rechub_examples.py applies."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from bench.rechub_examples import PORTING, PORTING_NAMES, rewrite_imports

README = Path(__file__).resolve().parents[2] / "README.md"

# (Torch-RecHub module, name) imported by its examples/ and tests/ (ONNX export, quantization and
# serving are not part of this list).
UPSTREAM_NAMES = [
    ("torch_rechub.basic.features", n) for n in ("DenseFeature", "SparseFeature", "SequenceFeature")
] + [
    ("torch_rechub.basic.loss_func", "RegularizationLoss"),
    ("torch_rechub.basic.metric", "topk_metrics"),
    ("torch_rechub.basic.metric", "auc_score"),
    ("torch_rechub.basic.metric", "gauc_score"),
    ("torch_rechub.basic.metric", "log_loss"),
    ("torch_rechub.data.convert", "pa_array_to_tensor"),
    ("torch_rechub.data.dataset", "ParquetIterableDataset"),
    ("torch_rechub.models", "matching"),
    ("torch_rechub.models", "ranking"),
    ("torch_rechub.models", "multi_task"),
    ("torch_rechub.trainers", "CTRTrainer"),
    ("torch_rechub.trainers", "MatchTrainer"),
    ("torch_rechub.trainers", "MTLTrainer"),
] + [
    ("torch_rechub.utils.data", n) for n in (
        "DataGenerator", "MatchDataGenerator", "SequenceDataGenerator", "TorchDataset", "PredictDataset",
        "array_replace_with_dict", "df_to_dict", "generate_seq_feature", "pad_sequences")
] + [
    ("torch_rechub.utils.match", n) for n in (
        "Annoy", "Faiss", "gather_inbatch_logits", "gen_model_input", "generate_seq_feature_match",
        "inbatch_negative_sampling", "negative_sample")
] + [
    ("torch_rechub.models.ranking", n) for n in (
        "WideDeep", "DeepFM", "DCN", "DCNv2", "EDCN", "AFM", "FiBiNet", "DeepFFM", "FatDeepFFM", "BST", "DIN", "DIEN",
        "AutoInt")
] + [
    ("torch_rechub.models.matching", n) for n in (
        "DSSM", "FaceBookDSSM", "YoutubeDNN", "YoutubeSBC", "MIND", "GRU4Rec", "NARM", "SASRec", "SINE", "STAMP",
        "ComirecSA", "ComirecDR")
] + [("torch_rechub.models.multi_task", n) for n in ("SharedBottom", "ESMM", "MMOE", "PLE", "AITM")] + [
    ("torch_rechub.models.generative.hstu", "HSTUModel"), ("torch_rechub.models.generative.hllm", "HLLMModel"),
    ("torch_rechub.basic.layers", "HSTUBlock"), ("torch_rechub.basic.layers", "HSTULayer"),
    ("torch_rechub.utils.hstu_utils", "RelPosBias"), ("torch_rechub.utils.hstu_utils", "VocabMask"),
    ("torch_rechub.trainers.seq_trainer", "SeqTrainer"), ("torch_rechub.models.generative.rqvae", "RQVAEModel"),
    ("torch_rechub.models.generative.tiger", "TIGERModel"), ("torch_rechub.trainers.rqvae_trainer", "Trainer"),
    ("torch_rechub.utils.data", "TigerSeqDataset"), ("torch_rechub.utils.data", "Trie"),
    ("torch_rechub.utils.data", "EmbDataset"),
]


def _target(module: str, name: str) -> tuple[str, str]:
    return PORTING_NAMES.get((module, name), (PORTING[module], name))


@pytest.mark.parametrize("module,name", UPSTREAM_NAMES, ids=[f"{m}.{n}" for m, n in UPSTREAM_NAMES])
def test_every_upstream_name_exists_where_the_table_sends_it(module, name):
    target_module, target_name = _target(module, name)
    namespace = {}
    exec(f"from {target_module} import {target_name}", namespace)  # what the ported script runs  # noqa: S102
    assert namespace[target_name] is not None


def test_model_modules_list_their_models_like_torch_rechub():
    # Torch-RecHub's e2e tests sweep `models.matching.__all__`; the same names must be there.
    from trainhub.models import matching, multitask, ranking

    for module, family in ((matching, "torch_rechub.models.matching"), (ranking, "torch_rechub.models.ranking"),
                           (multitask, "torch_rechub.models.multi_task")):
        expected = {n for m, n in UPSTREAM_NAMES if m == family}
        assert expected <= set(module.__all__)


def test_trainers_have_torch_rechub_methods():
    from trainhub.trainers import CTRTrainer, MatchTrainer, MTLTrainer

    for cls in (CTRTrainer, MatchTrainer, MTLTrainer):
        for method in ("fit", "train_one_epoch", "evaluate", "predict", "visualization"):
            assert callable(getattr(cls, method)), f"{cls.__name__}.{method}"
    assert callable(MatchTrainer.inference_embedding)


def _readme_rows() -> list[tuple[str, list[str], str, list[str]]]:
    text = README.read_text()
    section = text[text.index("## Porting from Torch-RecHub"):]
    section = section[:section.index("\n## ", 5)]
    rows = []
    for line in section.splitlines():
        found = re.findall(r"`from ([\w.]+) import ([^`]+)`", line)
        if line.startswith("|") and len(found) >= 2 and found[0][0].startswith("torch_rechub"):
            (src, src_names), (dst, dst_names) = found[0], found[1]
            split = lambda s: [n.strip().split(" as ")[0] for n in s.split(",") if n.strip() != "..."]  # noqa: E731
            rows.append((src, split(src_names), dst, split(dst_names)))
    return rows


def test_readme_porting_table_is_the_one_the_example_runner_applies():
    rows = _readme_rows()
    assert {src for src, *_ in rows} == set(PORTING), "README's table and PORTING list different modules"
    for src, src_names, dst, dst_names in rows:
        if not src_names:  # "import ..." rows: the whole module maps
            assert PORTING[src] == dst, src
        for i, name in enumerate(src_names):
            target_module, target_name = _target(src, name)
            assert target_module == dst, f"README sends {src}.{name} to {dst}, the runner to {target_module}"
            if dst_names:
                assert dst_names[i] == target_name


def test_import_rewrite_follows_the_table():
    source = ("import os\n"
              "from torch_rechub.utils.match import Annoy, gen_model_input\n"
              "from torch_rechub.models import multi_task as mtl\n"
              "from torch_rechub.basic.metric import (\n    topk_metrics,\n)\n"
              "from torch_rechub.models.generative.hstu import HSTUModel\n"
              "from torch_rechub.serving import builder_factory\n")
    out = rewrite_imports(source)
    assert "from trainhub.retrieval import Annoy\nfrom trainhub.data import gen_model_input\n" in out
    assert "from trainhub.models import multitask as mtl\n" in out
    assert "from trainhub.metrics.compat import topk_metrics\n" in out
    assert "from trainhub.models.generative import HSTUModel\n" in out
    assert "from torch_rechub.serving import builder_factory\n" in out  # no counterpart: left alone
    compile(out, "<rewritten>", "exec")
