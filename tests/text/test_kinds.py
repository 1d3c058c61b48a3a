"""Task kinds: the metric keys a run can produce come from the kinds, and every kind produces
exactly the keys it declares; directions, aliases, label encoding and decoding per kind."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainhub.text.config import HeadConfig, TaskConfig, TrainingConfig
from trainhub.text.kinds import KINDS, LOWER_IS_BETTER, TASK_TYPES, TYPE_ALIASES, kind_for, tags_to_spans
from trainhub.text.objective import MultiTaskObjective, expected_metric_keys, metric_directions

HEADS = {
    "single_label_classification": HeadConfig(name="h", labels=["neg", "pos"], num_labels=2),
    "multi_label_classification": HeadConfig(name="h", labels=["a", "b", "c"], num_labels=3),
    "ner": HeadConfig(name="h", labels=["O", "B-PER", "I-PER"], num_labels=3),
    "regression": HeadConfig(name="h", labels=["h"], num_labels=1),
}
LABELS = {  # [B=4] batches of gold labels in each kind's encoding
    "single_label_classification": torch.tensor([0, 1, 1, 0]),
    "multi_label_classification": torch.tensor([[1.0, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]]),
    "ner": torch.tensor([[-100, 1, 2, 0], [-100, 0, 1, -100], [-100, 1, 0, 0], [-100, 0, 0, 0]]),
    "regression": torch.tensor([[0.5], [1.0], [-1.0], [2.0]]),
}


def _model(kind: str):
    gold = LABELS[kind]
    g = torch.Generator().manual_seed(0)
    width = HEADS[kind].num_labels
    logits = torch.randn(*gold.shape[:2], width, generator=g) if kind == "ner" else torch.randn(4, width, generator=g)

    def model(input_ids, attention_mask, task_id, labels, token_type_ids):
        return {"loss": torch.tensor(0.5), "logits": {"h": logits}}

    return model


@pytest.mark.parametrize("kind", TASK_TYPES)
def test_each_kind_produces_exactly_the_keys_it_declares(kind):
    task = TaskConfig(name="T", type=kind, data_path="x", heads=[HEADS[kind]])
    objective = MultiTaskObjective([task])
    batch = {"input_ids": torch.ones(4, 4, dtype=torch.long), "labels": {"h": LABELS[kind]}}
    objective.validation_step(_model(kind), ("T", batch))
    metrics = objective.compute_metrics()
    assert set(metrics) == set(expected_metric_keys([task])) == set(objective.metric_names())
    assert [k[len("eval_T_h_"):] for k in metrics if k.startswith("eval_T_h_")] == list(kind_for(kind).metric_names)


def test_directions_are_declared_by_the_kinds():
    tasks = [TaskConfig(name="R", type="regression", data_path="x", heads=[HEADS["regression"]]),
             TaskConfig(name="S", type="classification", data_path="x", heads=[HEADS["single_label_classification"]])]
    directions = metric_directions(tasks)
    assert directions["eval_loss"] is False and directions["eval_overall_f1"] is True
    assert directions["eval_R_h_rmse"] is False and directions["eval_S_h_macro_f1"] is True
    assert MultiTaskObjective(tasks).higher_is_better("eval_R_loss") is False
    assert MultiTaskObjective(tasks).higher_is_better("eval_nope") is None
    assert {"loss", "mse", "rmse", "mae"} == LOWER_IS_BETTER
    assert TrainingConfig(metric_for_best_model="eval_R_h_mae").metric_mode() == "min"


def test_types_and_aliases_come_from_the_kinds():
    assert TASK_TYPES == ("single_label_classification", "multi_label_classification", "ner", "regression")
    assert kind_for("classification") is KINDS["single_label_classification"]
    assert TYPE_ALIASES["token_classification"] == "ner"
    with pytest.raises(ValueError, match="unknown task type 'qa'"):
        kind_for("qa")
    with pytest.raises(ValueError, match="takes exactly one head"):
        TaskConfig(name="N", type="ner", data_path="x", heads=[HeadConfig(name="a"), HeadConfig(name="b")])


def test_label_encoding_per_kind():
    assert kind_for("single_label_classification").encode_label("h", "pos", ["neg", "pos"], "r") == 1
    assert kind_for("single_label_classification").encode_label("h", "0", ["neg", "pos"], "r") == 0  # an id
    assert kind_for("multi_label_classification").encode_label("h", ["c", "a"], ["a", "b", "c"], "r") == [1, 0, 1]
    assert kind_for("regression").encode_label("h", 2, ["h"], "r") == [2.0]
    assert kind_for("ner").encode_label("h", ["B-PER", "O"], ["O", "B-PER", "I-PER"], "r") == [1, 0]
    with pytest.raises(ValueError, match="r: label 'x' of head 'h' is not one of"):
        kind_for("single_label_classification").encode_label("h", "x", ["neg", "pos"], "r")
    with pytest.raises(ValueError, match="is not a number"):
        kind_for("regression").encode_label("h", "x", ["h"], "r")


def test_multi_label_cells_split_and_one_shared_label_needs_one_head():
    kind = kind_for("multi_label_classification")
    assert kind.parse_cell("sports|politics; art") == ["sports", "politics", "art"]
    assert kind.parse_cell('{"h": ["a"]}') == {"h": ["a"]}
    task = TaskConfig(name="M", type="multi_label_classification", data_path="x",
                      heads=[HeadConfig(name="a"), HeadConfig(name="b")])
    with pytest.raises(ValueError, match="labels must be a"):
        kind.example({"text": "t", "label": ["x"]}, task, "f, row 1")


def test_decoding_per_kind():
    logits = torch.tensor([0.0, 2.0])
    single = kind_for("single_label_classification").decode(logits, HEADS["single_label_classification"],
                                                            ["neg", "pos"], "t", None, ())
    assert single["label"] == "pos" and single["score"] == pytest.approx(float(F.softmax(logits, -1)[1]))
    multi = kind_for("multi_label_classification").decode(torch.tensor([3.0, -3.0, 0.1]),
                                                          HEADS["multi_label_classification"], ["a", "b", "c"],
                                                          "t", None, ())
    assert multi["labels"] == ["a", "c"]
    assert kind_for("regression").decode(torch.tensor([1.5]), HEADS["regression"], ["h"], "t", None, ()) == \
        {"value": 1.5}
    words = [("john", 0, 4), ("doe", 5, 8), ("here", 9, 13)]
    ner_logits = torch.tensor([[0.0, 0, 0], [0, 9, 0], [0, 0, 9], [0, 0, 9], [9, 0, 0]])  # [T=5, C=3]
    spans = kind_for("ner").decode(ner_logits, HEADS["ner"], ["O", "B-PER", "I-PER"], "john doe here", words,
                                   [None, 0, 1, 1, 2])  # "doe" has two sub-tokens: the first decides
    assert [(s["entity"], s["text"]) for s in spans] == [("PER", "john doe")]


def test_tags_to_spans_starts_a_new_entity_on_a_stray_i_tag():
    spans = tags_to_spans(["B-PER", "I-LOC", "O"], [(0, 1), (2, 3), (4, 5)], "a b c")
    assert [(s["entity"], s["start"], s["end"]) for s in spans] == [("PER", 0, 1), ("LOC", 2, 3)]


@pytest.fixture
def restore_kinds():
    from trainhub.text import kinds

    saved = dict(kinds.KINDS), dict(kinds.TYPE_ALIASES)
    yield
    for table, copy in zip((kinds.KINDS, kinds.TYPE_ALIASES), saved):
        table.clear()
        table.update(copy)


def test_a_new_kind_is_one_class_registered_in_one_place(make_config, restore_kinds):
    """A kind defined outside the package (here: the test) reaches config validation, label
    encoding, the model's heads, metrics and early stopping without touching any
    trainhub file."""
    import numpy as np

    from trainhub.text import kinds
    from trainhub.text.config import load_experiment_config
    from trainhub.text.heads import HEAD_REGISTRY, SingleLabelClassificationHeads
    from trainhub.text.trainer import Trainer

    class ErrorRateKind(kinds.SingleLabelKind):
        """One class per row, scored by its error rate (lower is better)."""

        name = "error_rate_classification"
        aliases = ("errors",)
        heads = SingleLabelClassificationHeads
        metric_names = ("error_rate",)
        lower_is_better = frozenset({"error_rate"})

        def score(self, preds, golds, head, names):
            predicted = np.concatenate(preds).argmax(-1)  # preds hold the logits
            return {"error_rate": float(np.mean(predicted != np.concatenate(golds)))}

    with pytest.raises(ValueError, match="unknown task type 'errors'"):
        kind_for("errors")
    kinds.register_kind(ErrorRateKind())
    with pytest.raises(ValueError, match="is taken"):
        kinds.register_kind(ErrorRateKind())
    assert HEAD_REGISTRY["errors"] is SingleLabelClassificationHeads

    raw = make_config(num_epochs=2, metric_for_best_model="eval_Sentiment_sentiment_head_error_rate")
    raw["tasks"] = raw["tasks"][:1]
    raw["tasks"][0]["type"] = "errors"
    cfg = load_experiment_config(raw)
    assert cfg.tasks[0].type == "error_rate_classification" and cfg.training.metric_mode() == "min"
    trainer = Trainer.from_config(cfg)
    try:
        trainer.train()
        metrics = trainer.evaluate()
    finally:
        trainer.close()
    assert 0.0 <= metrics["eval_Sentiment_sentiment_head_error_rate"] <= 1.0
    assert not any(k.endswith("_accuracy") for k in metrics)
