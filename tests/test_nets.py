"""Encoders and decoders: shapes for 28x28 / 32x32 and 1 / 3 channels, gradients, errors."""

from __future__ import annotations

import pytest
import torch

import vaerepair as vr
from vaerepair import nets


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 16, 12)])
@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_encoder_decoder_shapes_and_gradients(shape, kind):
    if kind == "mlp":
        enc, dec = nets.MLPEncoder(shape, hidden=(64, 32)), nets.MLPDecoder(8, shape, hidden=(32, 64))
    else:
        enc = nets.ConvEncoder(shape, hidden=(8, 16), out_features=32)
        dec = nets.ConvDecoder(8, shape, hidden=(16, 8))
    x = torch.rand(5, *shape)
    h = enc(x)
    assert h.shape == (5, enc.out_features)
    out = dec(torch.randn(5, 8))
    assert out.shape == (5, *shape)
    (h.square().sum() + out.square().sum()).backward()
    for name, p in [*enc.named_parameters(), *dec.named_parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_mlp_default_is_the_reports_784_400_shape():
    enc, dec = nets.MLPEncoder(), nets.MLPDecoder()
    assert [m.weight.shape for m in enc.modules() if isinstance(m, torch.nn.Linear)] == [(400, 784)]
    assert [m.weight.shape for m in dec.modules() if isinstance(m, torch.nn.Linear)] == [(400, 20), (784, 400)]


def test_params_per_pixel_multiplies_channels():
    assert nets.ConvDecoder(4, (3, 32, 32), params_per_pixel=2)(torch.randn(2, 4)).shape == (2, 6, 32, 32)
    assert nets.MLPDecoder(4, (1, 28, 28), params_per_pixel=2)(torch.randn(2, 4)).shape == (2, 2, 28, 28)


def test_group_norm_is_per_sample():
    enc = nets.ConvEncoder((1, 28, 28), hidden=(8, 16), out_features=16, norm="group").train()
    x = torch.rand(4, 1, 28, 28)
    together = enc(x)
    alone = torch.cat([enc(x[i : i + 1]) for i in range(4)])
    assert torch.allclose(together, alone, atol=1e-5)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in enc.modules())


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="divisible by 4, got 30x30"):
        nets.ConvEncoder((1, 30, 30))
    with pytest.raises(ValueError, match=r"1 channel\(s\).*got \(2, 3, 28, 28\)"):
        nets.MLPEncoder((1, 28, 28))(torch.rand(2, 3, 28, 28))
    with pytest.raises(ValueError, match="size 28x28"):
        nets.ConvEncoder((1, 28, 28))(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match="image_shape must be"):
        nets.MLPEncoder((28, 28))
    with pytest.raises(ValueError, match="norm must be"):
        nets.ConvEncoder(norm="batch")


def test_an_activation_is_named_the_same_way_in_nets_specs_and_factories() -> None:
    """activation="silu" in the factories and specs, nn.SiLU in the nets: now both take either."""
    import pytest
    from torch import nn

    by_name = nets.MLPEncoder((1, 4, 4), hidden=(8,), activation="silu")
    by_class = nets.MLPEncoder((1, 4, 4), hidden=(8,), activation=nn.SiLU)
    assert [type(m) for m in by_name.net] == [type(m) for m in by_class.net] and isinstance(by_name.net[1], nn.SiLU)
    assert any(isinstance(m, nn.GELU) for m in nets.ConvDecoder(4, (1, 8, 8), (8, 4), activation="gelu").modules())
    with pytest.raises(ValueError, match="unknown activation 'swish'; known: relu, silu, gelu, tanh"):
        nets.UNetEncoder(1, (4, 8), activation="swish")
    with pytest.raises(TypeError, match="activation must be a name"):
        nets.MLPDecoder(4, (1, 4, 4), activation=3)


def test_conv_widths_are_hidden_as_everywhere_and_the_old_keyword_warns() -> None:
    import pytest

    with pytest.warns(DeprecationWarning, match=r"ConvEncoder\(channels=...\) is deprecated"):
        old = nets.ConvEncoder((1, 8, 8), channels=(4, 6), out_features=None)
    assert old.feature_shape == nets.ConvEncoder((1, 8, 8), hidden=(4, 6), out_features=None).feature_shape == (6, 2, 2)
    with pytest.warns(DeprecationWarning, match="ConvDecoder"):
        nets.ConvDecoder(3, (1, 8, 8), channels=(6, 4))


def test_networks_declare_the_fully_convolutional_protocol_that_models_read() -> None:
    from vaerepair.nets import ConvHead, FullyConvolutional, FullyConvolutionalEncoder, MLPEncoder, UNetEncoder

    unet, head = UNetEncoder(1, widths=(8, 16)), ConvHead(4, 1, hidden=8)
    assert isinstance(unet, FullyConvolutionalEncoder) and isinstance(head, FullyConvolutional)
    assert not isinstance(MLPEncoder(), FullyConvolutionalEncoder)

    class MyEncoder(torch.nn.Module):  # a user's own network: declaring the attributes is enough
        image_shape, out_channels, multiple, receptive_radius = (1, None, None), 8, 1, 1

        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 8, 3, padding=1)

        def forward(self, x):
            return self.conv(x)

    model = vr.models.LatentVariableModel(MyEncoder(), vr.distributions.SpatialPointMassPosterior(8, 4), head,
                                          vr.distributions.Gaussian(0.1))
    assert model.receptive_radius == 1 + head.receptive_radius and model.multiple == 1
    x = torch.rand(1, 1, 40, 36)
    torch.testing.assert_close(model.repair(x, tile=24), model.repair(x))  # exact tiles from the declared radius


def test_photo_nets_compute_channels_last_with_the_values_of_the_contiguous_layout() -> None:
    """The U-Net and the head keep their convolution weights channels-last (oneDNN's fast layout on CPUs);
    a copy moved back to the contiguous layout gives the same features, and a checkpoint round trip keeps them."""
    torch.manual_seed(0)
    unet, head = nets.UNetEncoder(1), nets.ConvHead(32, 1)
    for net in (unet, head):
        convs = [m.weight for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
        assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
        assert any(not w.is_contiguous() for w in convs)  # (a layout of one input channel is both)
    x = torch.rand(2, 1, 37, 53)
    plain = nets.UNetEncoder(1)
    plain.load_state_dict(unet.state_dict())
    plain.to(memory_format=torch.contiguous_format)
    torch.testing.assert_close(unet(x), plain(x), rtol=1e-5, atol=1e-5)
    again = nets.UNetEncoder(1)
    again.load_state_dict(plain.state_dict())  # weights saved contiguous load into the channels-last layout
    assert again.first[0].weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(again(x), unet(x), rtol=0, atol=0)
