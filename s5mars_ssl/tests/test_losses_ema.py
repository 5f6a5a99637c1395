import copy

import torch
import torch.nn.functional as F

from s5mars_ssl.augseg.utils.ema import ema_decay, ema_update
from s5mars_ssl.augseg.utils.loss_helper import (
    OhemCrossEntropy,
    hard_ce,
    soft_ce,
    soft_to_hard_masks,
    unsupervised_loss,
)
from s5mars_ssl.augseg.utils.lr_helper import poly_lr


def test_soft_to_hard_masks():
    conf = torch.tensor([[0.2, 0.5, 0.89, 0.9, 0.95, 1.0]])
    valid = torch.tensor([[True, True, True, True, True, False]])
    hard, soft = soft_to_hard_masks(conf, valid, tau_hard=0.5, tau_soft=0.9)
    assert hard.tolist() == [[False, True, True, True, True, False]]
    assert soft.tolist() == [[True, True, True, False, False, False]]
    hard_all, _ = soft_to_hard_masks(conf, valid, tau_hard=-0.7, tau_soft=0.9)
    assert hard_all.tolist() == valid.tolist()  # the original's -0.7: every valid pixel


def test_soft_and_hard_ce_normalisation():
    torch.manual_seed(0)
    logits = torch.randn(1, 4, 3, 3)
    target = torch.randint(0, 4, (1, 3, 3))
    mask = torch.zeros(1, 3, 3, dtype=torch.bool)
    mask[0, 0, :2] = True
    ce = F.cross_entropy(logits, target, reduction="none")
    # the original: hard term averaged over all pixels, soft over (count + 1)
    assert torch.allclose(hard_ce(logits, target, mask), ce[mask].sum() / 9)
    prob = torch.softmax(torch.randn(1, 4, 3, 3), 1)
    ref = -(prob * F.log_softmax(logits, 1)).sum(1)[mask].sum() / (2 + 1)
    assert torch.allclose(soft_ce(logits, prob, mask), ref)
    assert hard_ce(logits, target, torch.zeros_like(mask)) == 0


def test_unsupervised_loss_switch():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4)
    prob = torch.softmax(torch.randn(2, 3, 4, 4), 1)
    conf, target = prob.max(1)
    valid = torch.ones_like(conf, dtype=torch.bool)
    cfg = {"soft_to_hard": {"enabled": True, "tau_hard": -0.7, "tau_soft": 0.9}}
    hard, soft, st = unsupervised_loss(logits, target, conf, prob, valid, cfg)
    assert st["hard_ratio"] == 1.0 and soft > 0
    cfg = {"soft_to_hard": {"enabled": False}, "conf_thresh": 2.0}
    hard, soft, st = unsupervised_loss(logits, target, conf, prob, valid, cfg)
    assert hard == 0 and soft == 0 and st["hard_ratio"] == 0.0


def test_ohem_keeps_hard_pixels_and_min_kept():
    logits = torch.zeros(1, 2, 1, 4)
    logits[0, 0] = torch.tensor([5.0, 4.0, -1.0, 0.0])  # p(class 0): ~1, ~1, 0.27, 0.5
    target = torch.zeros(1, 1, 4, dtype=torch.long)
    ce = F.cross_entropy(logits, target, reduction="none").flatten()
    got = OhemCrossEntropy(thresh=0.7, min_kept=1)(logits, target)
    assert torch.allclose(got, ce[2:].mean())  # only pixels with p <= 0.7
    got = OhemCrossEntropy(thresh=0.7, min_kept=3)(logits, target)
    assert torch.allclose(got, ce[1:].mean())  # threshold raised to keep 3
    target[0, 0, 3] = 255
    got = OhemCrossEntropy(thresh=0.7, min_kept=10)(logits, target)
    assert torch.allclose(got, ce[:3].mean())


def test_ema_rule_params_and_buffers():
    torch.manual_seed(0)
    student = torch.nn.Sequential(torch.nn.Conv2d(2, 2, 1), torch.nn.BatchNorm2d(2))
    teacher = copy.deepcopy(student)
    student(torch.randn(4, 2, 3, 3))  # moves the student's BN buffers
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    assert ema_decay(0) == 0.0 and ema_decay(9) == 0.9 and ema_decay(10**6) == 0.996
    t_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    d = ema_update(teacher, student, iteration=9)
    assert d == 0.9
    for k, v in teacher.state_dict().items():
        s = student.state_dict()[k]
        if v.dtype.is_floating_point:
            assert torch.allclose(v, 0.9 * t_before[k] + 0.1 * s), k
        else:
            assert torch.equal(v, s), k
    ema_update(teacher, student, iteration=0)  # decay 0: teacher becomes the student
    for k, v in teacher.state_dict().items():
        assert torch.allclose(v.float(), student.state_dict()[k].float())


def test_poly_lr():
    assert poly_lr(0.01, 0, 100) == 0.01
    assert abs(poly_lr(0.01, 50, 100) - 0.01 * 0.5 ** 0.9) < 1e-12
    assert poly_lr(0.01, 100, 100) == 0.0
