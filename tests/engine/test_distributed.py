"""Multi-process training under torchrun (2 CPU processes, gloo), checked against one process.

One launch runs every recommendation scenario (``ddp_worker.rec``); the tests below read what each
rank saved and compare it with single-process runs built from the same ``ddp_cases`` builders.
Every launch has a timeout, so a hang fails instead of blocking CI.
"""

from __future__ import annotations

import pytest
import torch

from tests.engine import ddp_cases as cases
from trainhub.data import DictDataset, make_loader
from trainhub.engine.sharding import BlockShardSampler, TrainShardSampler, block_bounds, shard_loader


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp_rec")
    proc, _ = cases.launch("rec", out, timeout=150)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out, cases.load_results(out)


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


# -- sharding (no processes needed) ---------------------------------------------------------------
def test_train_shards_are_equal_and_cover_every_row():
    for n in (10, 11, 3):
        shards = [list(TrainShardSampler(range(n), r, 4, shuffle=True, seed=7)) for r in range(4)]
        assert len({len(s) for s in shards}) == 1  # same number of rows -> same number of batches
        assert set().union(*shards) == set(range(n))
        # the ranks' t-th rows together are consecutive rows of one shared permutation
        sampler = TrainShardSampler(range(n), 0, 1, shuffle=True, seed=7)
        order = list(sampler)[: len(shards[0]) * 4]
        assert [shards[r][t] for t in range(len(shards[0])) for r in range(4) if t * 4 + r < n] == order[:n]


def test_eval_shards_cover_each_row_once_in_order():
    assert [block_bounds(10, r, 3) for r in range(3)] == [(0, 4), (4, 7), (7, 10)]
    blocks = [list(BlockShardSampler(range(10), r, 3)) for r in range(3)]
    assert sum(blocks, []) == list(range(10))


def test_shard_loader_keeps_batches_collate_and_shuffle():
    ds = DictDataset({"a": torch.arange(20)}, torch.arange(20).float())
    loader = make_loader(ds, 4, shuffle=True, seed=3)
    parts = [shard_loader(loader, r, 2, train=True, common_seed=lambda s: s)[0] for r in range(2)]
    assert all(p.batch_size == 4 and p.collate_fn is loader.collate_fn for p in parts)
    for p in parts:
        p.sampler.set_epoch(1)
    batches = [list(p) for p in parts]
    assert len(batches[0]) == len(batches[1]) == 3
    x, y = batches[0][0]
    assert isinstance(x["a"], torch.Tensor) and x["a"].shape == (4,)  # whole-tensor batch slices
    rows = torch.cat([b[0]["a"] for bs in batches for b in bs])
    assert set(rows.tolist()) == set(range(20))
    # the same order as EpochShuffleSampler gives one process in that epoch
    loader.sampler.set_epoch(1)
    single = torch.cat([b[0]["a"] for b in loader])
    interleaved = torch.stack([torch.cat([b[0]["a"] for b in bs]) for bs in batches], 1).reshape(-1)
    assert torch.equal(interleaved[:20], single)
    val = [shard_loader(make_loader(ds, 4), r, 2, train=False, common_seed=lambda s: s)[0] for r in range(2)]
    assert torch.cat([b[0]["a"] for v in val for b in v]).tolist() == list(range(20))


# -- multi-process ----------------------------------------------------------------------------------
def test_rowwise_parameters_are_broadcast_but_not_reduced(rec):
    _, (r0, r1) = rec
    a, b = r0["rowwise"], r1["rowwise"]
    assert torch.equal(a["start"], b["start"])  # rank 0's table on both ranks
    assert torch.equal(a["dense_grad"], b["dense_grad"])  # DDP averaged the dense layer
    assert not torch.equal(a["table_grad"], b["table_grad"])  # the table's gradient stayed local
    assert a["table_grad"][0].abs().sum() > 0 and a["table_grad"][1].abs().sum() == 0


@pytest.mark.parametrize("method", ["gradnorm", "metabalance"])
def test_gradnorm_and_metabalance_with_rowwise_tables(rec, method):
    # Row-wise tables keep local gradients (their optimizer averages them); everything else,
    # including the loss weights / norm averages GradNorm and MetaBalance derive, is global.
    _, (r0, r1) = rec
    a, b = r0["rowwise_weighting"][method], r1["rowwise_weighting"][method]
    single = cases.rowwise_weighting_step(method, cases.RowwiseMTL(), slice(0, 2 * cases.BATCH))
    for key in single:
        if key == "table_grad":
            torch.testing.assert_close((a[key] + b[key]) / 2, single[key])
        else:
            torch.testing.assert_close(a[key], b[key])
            torch.testing.assert_close(a[key], single[key])


def test_ranks_whose_shards_disagree_stop_together(rec):
    _, (r0, r1) = rec
    synced, local = (r0["stop_synced"], r1["stop_synced"]), (r0["stop_local"], r1["stop_local"])
    # global score worsens after epoch 0: both stop after epoch 1 (patience 1); rank 1 alone would too,
    # rank 0 alone never would; before, that left rank 0 waiting in an all-reduce forever
    assert synced[0] == synced[1] and synced[0]["epochs"] == 2 and synced[0]["stopped"]
    assert synced[0]["history"][1]["val/score"] == pytest.approx((10 * 1 - 10 * 10 * 1) / 20)
    # a task without sync_metrics: rank 0's metrics are broadcast, so ranks still agree
    assert local[0] == local[1] and local[0]["epochs"] == 4


@pytest.mark.parametrize("kind", ["match", *cases.MTL_METHODS])
def test_one_step_equals_one_process_on_the_combined_batch(rec, kind, tmp_path):
    _, (r0, r1) = rec
    _same(r0["one_step"][kind], r1["one_step"][kind])
    single = cases.one_step(kind, tmp_path, 2 * cases.BATCH)
    _same(r0["one_step"][kind], single)


def test_in_batch_negatives_with_unequal_batches(rec):
    import torch.nn.functional as F

    from trainhub.trainers import MatchTrainer

    _, ranks = rec
    n = 2 * cases.BATCH - 3
    x = cases.match_rows(n, seed=4)
    trainer = MatchTrainer(cases.match_model(), mode=2, in_batch_neg=True, progress=False, model_path="unused")
    with torch.no_grad():
        logits = trainer.task.negatives(trainer.model, x, sample=True).logits()
    single = F.cross_entropy(logits, torch.zeros(n, dtype=torch.long), reduction="none")
    for r in ranks:
        start, end = r["match_unequal"]["rows"]
        torch.testing.assert_close(r["match_unequal"]["per_row_loss"], single[start:end])


def test_ctr_global_metrics_equal_one_process_and_only_rank0_writes(rec):
    from trainhub.trainers import CTRTrainer

    out, (r0, r1) = rec
    a, b = r0["ctr"], r1["ctr"]
    assert a["history"] == b["history"] and a["evaluate"] == b["evaluate"] and a["predict"] == b["predict"]
    sparse, dense, _, val, test = cases.ctr_loaders()
    model = cases.ctr_model(sparse, dense)
    model.load_state_dict(torch.load(out / "ctr" / "model.pth", weights_only=True))
    single = CTRTrainer(model, model_path=str(out / "single"), progress=False)
    expected = single.evaluate_all(model, val)
    # float32 scores of one row may differ in the last bit with the batch it was scored in
    assert a["evaluate"] == pytest.approx(expected, abs=1e-7)
    assert a["history"][a["best_epoch"]]["val/auc"] == pytest.approx(expected["auc"], abs=1e-7)
    assert a["predict"] == pytest.approx(single.predict(model, test), abs=1e-6)
    assert len(a["predict"]) == len(test.dataset)
    # files: rank 0 only; one CSV row per epoch (not one per rank)
    assert r1["written"] == [] and any(p.endswith("model.pth") for p in r0["written"])
    rows = (out / "ctr" / "logs" / "metrics.csv").read_text().strip().splitlines()
    auc_rows = [line.split(",") for line in rows if ",val/auc," in line]
    assert [float(v) for _, _, v in auc_rows] == pytest.approx([h["val/auc"] for h in a["history"]])


def test_resume_under_ddp_equals_an_uninterrupted_run(rec):
    _, ranks = rec
    for r in ranks:
        res = r["ctr_resume"]
        assert res["resumed_history"] == res["straight_history"]
        assert res["resumed_history"][0] == res["first_history"][0]
        _same(res["resumed"], res["straight"])


def test_match_and_mtl_global_metrics_equal_one_process(rec):
    from trainhub.trainers import MatchTrainer, MTLTrainer

    out, (r0, r1) = rec
    assert r0["mtl"] == r1["mtl"]
    assert r0["match"]["history"] == r1["match"]["history"] and r0["match"]["evaluate"] == r1["match"]["evaluate"]
    torch.testing.assert_close(r0["match"]["user_embedding"], r1["match"]["user_embedding"])
    model = cases.match_model()
    model.load_state_dict(torch.load(out / "match" / "model.pth", weights_only=True))
    val = make_loader(DictDataset(cases.match_rows(64, seed=1), torch.zeros(64)), 16)
    single = MatchTrainer(model, **{**cases.match_trainer_kwargs(out / "single_match")})
    assert r0["match"]["evaluate"] == pytest.approx(single.evaluate_all(model, val), abs=1e-9)
    assert r0["match"]["history"][-1]["train/loss"] < r0["match"]["history"][0]["train/loss"]
    users = make_loader(DictDataset(cases.match_rows(37, seed=2)), 8)
    expected = single.inference_embedding(model, "user", users, model_path=None)
    torch.testing.assert_close(r0["match"]["user_embedding"], expected)  # all 37 rows, in order

    x, y = cases.mtl_data()
    model = cases.mtl_model(batch_norm=True)
    model.load_state_dict(torch.load(out / "mtl" / "model_base_0.pth", weights_only=True))
    val = make_loader(DictDataset({k: v[224:] for k, v in x.items()}, y[224:]), 32)
    single = MTLTrainer(model, ["classification", "classification"], model_path=str(out / "single_mtl"),
                        progress=False)
    assert r0["mtl"]["evaluate"] == pytest.approx(single.evaluate(model, val), abs=1e-9)
    torch.testing.assert_close(torch.tensor(r0["mtl"]["predict"]), torch.tensor(single.predict(model, val)))


def test_an_error_on_one_rank_ends_the_job_with_that_error(tmp_path):
    proc, seconds = cases.launch("fail", tmp_path, timeout=90)
    assert proc.returncode != 0
    assert "boom on rank 1" in proc.stderr + proc.stdout
    assert seconds < 60


def test_user_distributed_sampler_and_unsplittable_samplers():
    from torch.utils.data import DataLoader, DistributedSampler, WeightedRandomSampler

    from trainhub.data.dataset import passthrough_collate

    ds = DictDataset({"a": torch.arange(11)})
    seed = lambda s: s  # noqa: E731
    # a DistributedSampler pads validation shards with duplicates: replaced by exact blocks
    vals = [shard_loader(DataLoader(ds, 4, sampler=DistributedSampler(ds, 2, r, shuffle=False),
                                    collate_fn=passthrough_collate), r, 2, False, seed) for r in range(2)]
    assert all(sharded for _, sharded in vals)
    assert sorted(int(i) for loader, _ in vals for b in loader for i in b["a"]) == list(range(11))
    # for training the user's own DistributedSampler is kept
    train = DataLoader(ds, 4, sampler=DistributedSampler(ds, 2, 1))
    assert shard_loader(train, 1, 2, True, seed) == (train, True)
    # a sampler trainhub cannot split is left alone and reported as not sharded
    weighted = DataLoader(ds, 4, sampler=WeightedRandomSampler([1.0] * 11, 11))
    assert shard_loader(weighted, 0, 2, True, seed) == (weighted, False)
