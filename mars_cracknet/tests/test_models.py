import pytest
import torch

from mars_cracknet.models import ResUNet, UNet, build_model


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_exact_parameter_counts():
    assert n_params(ResUNet(num_classes=1)) == 21_545_153
    assert n_params(UNet(num_classes=1)) == 13_395_329


def test_resunet_structure_facts():
    m = ResUNet(1)
    assert m.stem[0].kernel_size == (7, 7) and m.stem[0].stride == (2, 2)
    assert m.stem[0].bias is None
    assert m.bottleneck.body[0][0].dilation == (2, 2)
    assert isinstance(m.bottleneck.shortcut, torch.nn.Identity)
    assert m.head.in_channels == 64 and m.head.kernel_size == (1, 1)
    assert not any(isinstance(x, torch.nn.MaxPool2d) for x in m.modules())


@pytest.mark.parametrize("name", ["resunet", "unet"])
@pytest.mark.parametrize("hw", [(32, 32), (64, 96), (96, 64)])
def test_output_shapes(name, hw):
    m = build_model(name).eval()
    with torch.no_grad():
        out = m(torch.rand(2, 3, *hw))
    assert out.shape == (2, 1, *hw)


def test_multi_class_head():
    m = ResUNet(num_classes=3).eval()
    with torch.no_grad():
        assert m(torch.rand(1, 3, 64, 64)).shape == (1, 3, 64, 64)


def test_unet_width_option():
    narrow = UNet(num_classes=1, width=8).eval()
    assert narrow.inc[0].out_channels == 8 and narrow.head.in_channels == 8
    assert n_params(narrow) < n_params(UNet(1)) / 40
    with torch.no_grad():
        assert narrow(torch.rand(1, 3, 64, 32)).shape == (1, 1, 64, 32)
    with pytest.raises(ValueError, match="width must be 64"):
        build_model("resunet", width=8)


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("segformer")
