"""bf16 and fp32 predictions of a trained model agree (issue 29): a tiny U-Net trained for a
few dozen steps on generated crack images, predicted by the predictor (``predict.main``) with
``--precision fp32`` and ``--precision bf16``: the masks agree on at least 99 % of pixels."""

import numpy as np
import torch
from PIL import Image

from mars_cracknet.checkpoint import save_weights
from mars_cracknet.models import UNet
from mars_cracknet.predict import main


def _scenes(n: int, size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Textured grey images with dark random line segments (the cracks) and their masks."""
    rng = np.random.default_rng(seed)
    imgs = rng.normal(150, 20, (n, size, size, 3)).clip(0, 255)
    masks = np.zeros((n, size, size), bool)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        for _ in range(2):
            (y0, x0), (y1, x1) = rng.uniform(0, size, (2, 2))
            d = np.abs((y1 - y0) * (xx - x0) - (x1 - x0) * (yy - y0)) / np.hypot(y1 - y0,
                                                                                 x1 - x0)
            masks[i] |= d <= 1.5
        imgs[i][masks[i]] = rng.uniform(20, 60)
    return imgs.astype(np.uint8), masks


def test_bf16_and_fp32_masks_of_a_trained_unet_agree(tmp_path):
    torch.manual_seed(0)
    model = UNet(1, width=8)
    x, y = _scenes(32, seed=0)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0
    yt = torch.from_numpy(y).float()[:, None]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(25):  # 25 steps of batch 8
        i = (np.arange(8) + 8 * step) % len(x)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(xt[i]), yt[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    ckpt = save_weights(tmp_path / "best.safetensors", model.eval(), "unet")
    imgs, gts = tmp_path / "imgs", tmp_path / "masks"
    imgs.mkdir()
    gts.mkdir()
    xs, ys = _scenes(4, size=96, seed=1)
    for k in range(len(xs)):
        Image.fromarray(xs[k]).save(imgs / f"s{k}.png")
        Image.fromarray(ys[k].astype(np.uint8) * 255).save(gts / f"s{k}.png")
    masks, probs = {}, {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        assert main([str(ckpt), str(imgs), "--out", str(out), "--prob", "--tile", "64",
                     "--overlap", "16", "--precision", precision, "--threads", "2"]) == 0
        masks[precision] = np.stack([np.asarray(Image.open(out / f"s{k}_mask.png")) > 0
                                     for k in range(len(xs))])
        probs[precision] = np.stack([np.asarray(Image.open(out / f"s{k}_prob.png"))
                                     for k in range(len(xs))])
    fp32 = masks["fp32"]
    dice = 2 * (fp32 & ys).sum() / (fp32.sum() + ys.sum())
    assert dice > 0.5, dice                                  # it learned the cracks
    assert not np.array_equal(probs["fp32"], probs["bf16"])  # bf16 did run in bf16
    agree = (masks["fp32"] == masks["bf16"]).mean()
    assert agree >= 0.99, agree


def test_predictor_precision_defaults_to_auto():
    """Inference defaults to auto (bf16 where the CPU has native bf16); fp32 on request."""
    from mars_cracknet.predict import build_parser

    parser = build_parser()
    assert parser.parse_args(["m.safetensors", "x.png", "--out", "o"]).precision == "auto"
    assert parser.parse_args(["m.safetensors", "x.png", "--out", "o", "--precision",
                              "fp32"]).precision == "fp32"
