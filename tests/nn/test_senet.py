import pytest
import torch

from trainhub.nn import BilinearInteraction, SENETLayer


def test_bilinear_with_identity_weights_is_the_elementwise_product():
    x = torch.randn(2, 3, 4)
    for kind in BilinearInteraction.TYPES:
        layer = BilinearInteraction(4, 3, kind)
        with torch.no_grad():
            layer.weight.copy_(torch.eye(4).expand_as(layer.weight))
        out = layer(x)
        assert out.shape == (2, 3, 4)
        assert torch.allclose(out[:, 2], x[:, 1] * x[:, 2])


def test_bilinear_field_each_uses_the_left_fields_matrix():
    torch.manual_seed(0)
    layer = BilinearInteraction(4, 3, "field_each")
    x = torch.randn(2, 3, 4)
    assert torch.allclose(layer(x)[:, 2], (x[:, 1] @ layer.weight[1]) * x[:, 2], atol=1e-6)


def test_bilinear_rejects_unknown_type():
    with pytest.raises(ValueError, match="bilinear_type"):
        BilinearInteraction(4, 3, "nope")


def test_senet_reweights_fields_with_non_negative_weights():
    torch.manual_seed(0)
    layer = SENETLayer(num_fields=4, reduction_ratio=2)
    x = torch.randn(3, 4, 5)
    weights = layer.excitation(x.mean(-1))
    assert (weights >= 0).all()
    assert torch.allclose(layer(x), x * weights.unsqueeze(-1))
