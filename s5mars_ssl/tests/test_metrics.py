import numpy as np
import pytest
import torch

from s5mars_ssl.augseg.utils.metrics import IoUMeter, evaluate, predict_sliding, predict_whole


def test_iou_meter_ignores_255_and_absent_classes():
    target = np.array([[0, 0, 1, 255], [1, 1, 2, 255]])
    pred = np.array([[0, 1, 1, 0], [1, 1, 0, 2]])
    m = IoUMeter(4)
    m.update(pred, target)
    res = m.result()
    # class 0: tp 1, gt 2, pred 2 (the 255 pixels do not count) -> 1/3
    # class 1: tp 3, gt 3, pred 4 -> 3/4; class 2: tp 0 -> 0; class 3 absent -> None
    assert res["iou"][0] == pytest.approx(1 / 3)
    assert res["iou"][1] == pytest.approx(3 / 4)
    assert res["iou"][2] == 0.0 and res["iou"][3] is None
    assert res["miou"] == pytest.approx((1 / 3 + 3 / 4 + 0) / 3)
    assert res["pixel_acc"] == pytest.approx(4 / 6)


def test_sliding_window_matches_whole_for_a_pointwise_model():
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 5, 1).eval()  # per-pixel: windows cannot change the answer
    img = torch.randn(1, 3, 37, 53)
    whole = predict_whole(model, img)
    slid = predict_sliding(model, img, crop=16, stride=11, num_classes=5)
    assert slid.shape == whole.shape
    assert torch.allclose(slid, whole, atol=1e-6)
    small = predict_sliding(model, img, crop=64, stride=48, num_classes=5)  # padded window
    assert torch.allclose(small, whole, atol=1e-6)


def test_evaluate_over_a_loader_in_both_modes():
    model = torch.nn.Conv2d(3, 2, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
        model.weight[1, 0] = 1.0  # class 1 where channel 0 > 0, else class 0
    img = torch.tensor([[[[1.0, -1.0], [1.0, -1.0]]]]).repeat(1, 3, 1, 1)
    lbl = torch.tensor([[[1, 0], [0, 255]]])
    loader = [{"image": img, "label": lbl}]
    for mode in ("whole", "center_crop", "sliding"):
        res = evaluate(model, loader, 2, "cpu", mode=mode, crop=2, stride=1)
        assert res["iou"] == [pytest.approx(0.5), pytest.approx(0.5)]
        assert res["miou_all"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="evaluation mode must be one of"):
        evaluate(model, loader, 2, "cpu", mode="tiles")
