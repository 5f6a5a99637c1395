import pytest
import torch

from s5mars_ssl.augseg.models import DeepLabV3Plus, load_pretrained_encoder
from s5mars_ssl.augseg.models.model_helper import PretrainedLoadError, count_parameters


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return DeepLabV3Plus(num_classes=9)


def test_exact_parameter_count(model):
    assert count_parameters(model) == 40_472_921
    assert count_parameters(model.encoder) == 23_631_808
    assert count_parameters(model.decoder) == 16_841_113


def test_architecture_details(model):
    enc = model.encoder
    assert [m.out_channels for m in (enc.conv1, enc.conv2, enc.conv3)] == [64, 64, 128]
    assert enc.conv1.stride == (2, 2) and enc.maxpool.ceil_mode
    assert [len(enc.layer1), len(enc.layer2), len(enc.layer3), len(enc.layer4)] == [3, 4, 6, 3]
    assert [b.conv2.dilation[0] for b in enc.layer4] == [2, 4, 8]  # multi-grid (2, 2, 4)
    assert enc.layer4[0].conv2.stride == (1, 1)  # output stride 16
    # zero-init of the last BN in each residual branch
    assert all(float(b.bn3.weight.detach().abs().sum()) == 0 for b in enc.layer1)
    assert [b[0].dilation[0] for b in model.decoder.aspp.atrous] == [6, 12, 18]
    assert model.decoder.low_conv[0].out_channels == 48


def test_forward_shapes(model):
    model.eval()
    with torch.no_grad():
        c1, c4 = model.encoder(torch.randn(1, 3, 64, 96))
        y = model(torch.randn(1, 3, 64, 96))
    # max-pool with ceil_mode (as in the original): 64x96 -> 32x48 -> 17x25 -> 9x13 -> 5x7
    assert c1.shape == (1, 256, 17, 25) and c4.shape == (1, 2048, 5, 7)
    assert y.shape == (1, 9, 64, 96)


def test_pretrained_loading_is_strict_and_names_keys(model, tmp_path, capsys):
    state = {f"module.{k}": v.clone() + 1 for k, v in model.encoder.state_dict().items()}
    state["module.fc.weight"] = torch.zeros(1000, 2048)  # ignored
    path = tmp_path / "resnet50.pth"
    torch.save({"state_dict": state}, path)
    fresh = DeepLabV3Plus(9)
    assert load_pretrained_encoder(fresh, path) == 330
    assert torch.equal(fresh.encoder.conv1.weight, model.encoder.conv1.weight + 1)
    assert "loaded 330/330" in capsys.readouterr().out
    state["extra.thing"] = torch.zeros(3)
    del state["module.layer4.2.conv3.weight"]
    torch.save(state, path)
    with pytest.raises(PretrainedLoadError, match="1 missing .first: layer4.2.conv3.weight.*"
                                                  "1 unexpected .first: extra.thing"):
        load_pretrained_encoder(DeepLabV3Plus(9), path)


@pytest.mark.parametrize("content", ["list", "text", "empty"])
def test_pretrained_refuses_non_state_dicts(tmp_path, content):
    path = tmp_path / "bad.pth"
    if content == "list":
        torch.save([torch.zeros(2)], path)
    elif content == "text":
        path.write_text("not weights")
    else:
        torch.save({}, path)
    with pytest.raises(PretrainedLoadError, match="bad.pth"):
        load_pretrained_encoder(DeepLabV3Plus(9), path)
