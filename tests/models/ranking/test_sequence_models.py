"""DIN, DIEN and BST: padding never changes the output; DIEN's auxiliary loss is the DIEN one."""

import pytest
import torch
import torch.nn.functional as F

from trainhub.features import SequenceFeature, SparseFeature
from trainhub.models import get_model_entry, toy
from trainhub.models.ranking import BST, DIEN, DIN
from trainhub.models.ranking.dien import auxiliary_loss


def _build(name):
    torch.manual_seed(0)
    kwargs, batch = get_model_entry(name).example()
    model = get_model_entry(name).cls(**kwargs).eval()
    return model, batch


def _logits(out):
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize("name", ["DIN", "DIEN", "BST"])
def test_padding_row_embedding_does_not_change_the_output(name):
    # Row 0 of the item/cate tables is read only at padding positions (toy ids start at 1):
    # if attention/pooling were unmasked, rewriting it would move the logits.
    model, batch = _build(name)
    assert (batch["hist_item_id"] == 0).any(), "the toy batch must contain padding"
    before = _logits(model(batch))
    with torch.no_grad():
        for table in ("item_id", "cate_id"):
            model.embedding.tables[table].weight[0] = torch.randn(toy.EMBED_DIM) * 10
    assert torch.allclose(_logits(model(batch)), before, atol=1e-5)


@pytest.mark.parametrize("name", ["DIN", "DIEN"])
def test_pre_and_post_padding_give_the_same_logits(name):
    model, batch = _build(name)
    pre = dict(batch)
    for key in ("hist_item_id", "hist_cate_id", "neg_hist_item_id", "neg_hist_cate_id"):
        post = batch[key]
        lengths = (post != 0).sum(1)
        pre[key] = torch.stack([torch.roll(row, int(toy.SEQ_LEN - n)) for row, n in zip(post, lengths)])
    assert not torch.equal(pre["hist_item_id"], batch["hist_item_id"])
    assert torch.allclose(_logits(model(pre)), _logits(model(batch)), atol=1e-5)


def test_din_output_depends_on_the_target_item():
    model, batch = _build("DIN")
    other = dict(batch, item_id=(batch["item_id"] % (toy.VOCAB["item_id"] - 1)) + 1)
    assert not torch.allclose(model(other), model(batch))


def test_din_rejects_unpaired_history_and_target():
    with pytest.raises(ValueError, match="pair up one to one"):
        DIN([], toy.history_features(), toy.target_features()[:1], {"dims": [4]}, {"dims": [4]})


def test_dien_returns_logits_and_weighted_aux_loss():
    model, batch = _build("DIEN")
    logits, aux = model(batch)
    assert logits.shape == (toy.BATCH_SIZE,) and aux.dim() == 0 and aux > 0
    model.alpha = 0.0
    assert model(batch)[1] == 0


def test_dien_aux_loss_uses_the_negative_history():
    model, batch = _build("DIEN")
    other = dict(batch, neg_hist_item_id=torch.where(batch["neg_hist_item_id"] > 0,
                                                     (batch["neg_hist_item_id"] % 28) + 1, 0))
    assert torch.equal(model(other)[0], model(batch)[0])  # logits ignore negatives
    assert model(other)[1] != model(batch)[1]


def test_auxiliary_loss_matches_hand_computed_bce():
    torch.manual_seed(1)
    states, pos, neg = torch.randn(3, 2, 4, 5).unbind(0)
    valid = torch.tensor([[True, True, False, False], [True, False, False, False]])
    pos_logit = (states * pos).sum(-1)[valid]
    neg_logit = (states * neg).sum(-1)[valid]
    expected = 0.5 * (F.binary_cross_entropy(torch.sigmoid(pos_logit), torch.ones(3))
                      + F.binary_cross_entropy(torch.sigmoid(neg_logit), torch.zeros(3)))
    assert torch.allclose(auxiliary_loss(states, pos, neg, valid), expected, atol=1e-6)
    assert auxiliary_loss(states, pos, neg, torch.zeros_like(valid)) == 0


def test_dien_checks_negative_history_pairs():
    with pytest.raises(ValueError, match="negative history feature"):
        DIEN([], toy.history_features(), toy.neg_history_features()[:1], toy.target_features(), {"dims": [4]})


def test_bst_checks_dims_heads_and_length():
    hist, target = toy.history_features(pooling="concat"), toy.target_features()
    with pytest.raises(ValueError, match="must match"):
        BST([], hist, target[:1], {"dims": [4]}, nhead=2)
    with pytest.raises(ValueError, match="divisible by nhead"):
        BST([], hist, target, {"dims": [4]}, nhead=3)
    model = BST([], hist, target, {"dims": [4]}, nhead=2, max_seq_len=3).eval()
    with pytest.raises(ValueError, match="exceeds max_seq_len=3"):
        model(toy.batch())


def test_bst_empty_history_row_is_finite():
    model, batch = _build("BST")
    batch = dict(batch)
    batch["hist_item_id"] = batch["hist_item_id"].clone()
    batch["hist_cate_id"] = batch["hist_cate_id"].clone()
    batch["hist_item_id"][0] = 0
    batch["hist_cate_id"][0] = 0
    assert torch.isfinite(model(batch)).all()


def test_history_with_padding_idx_other_than_zero():
    item = SparseFeature("item", 10, embed_dim=4, padding_idx=9)
    hist = SequenceFeature("hist", 10, embed_dim=4, pooling="concat", shared_with="item", padding_idx=9)
    model = DIN([], [hist], [item], {"dims": [4]}, {"dims": [4], "use_softmax": True}).eval()
    x = {"item": torch.tensor([1, 2]), "hist": torch.tensor([[3, 4, 9], [5, 9, 9]])}
    before = model(x)
    with torch.no_grad():
        model.embedding.tables["item"].weight[9] = 5.0
    assert torch.allclose(model(x), before, atol=1e-6)
