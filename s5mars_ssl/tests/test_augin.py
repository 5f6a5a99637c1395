import pytest
import torch

from s5mars_ssl.augseg.dataset.augin import augin, partner_permutation


def _stats(x):
    return x.mean(dim=(2, 3)), x.std(dim=(2, 3), unbiased=False)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    scale = torch.tensor([0.5, 1.0, 2.0, 3.0]).view(4, 1, 1, 1)
    return torch.randn(4, 3, 16, 16, generator=g) * scale + torch.arange(4.0).view(4, 1, 1, 1)


def test_both_takes_partner_mean_and_std(batch):
    perm = torch.tensor([1, 2, 3, 0])
    out = augin(batch, "both", perm=perm)
    mu, sd = _stats(batch)
    mu_o, sd_o = _stats(out)
    assert torch.allclose(mu_o, mu[perm], atol=1e-4)
    assert torch.allclose(sd_o, sd[perm], atol=1e-4)


def test_mean_keeps_std(batch):
    perm = torch.tensor([3, 0, 1, 2])
    out = augin(batch, "mean", perm=perm)
    mu, sd = _stats(batch)
    mu_o, sd_o = _stats(out)
    assert torch.allclose(sd_o, sd, atol=1e-4)
    assert torch.allclose(mu_o, mu[perm], atol=1e-4)


def test_std_keeps_mean(batch):
    perm = torch.tensor([2, 3, 0, 1])
    out = augin(batch, "std", perm=perm)
    mu, sd = _stats(batch)
    mu_o, sd_o = _stats(out)
    assert torch.allclose(mu_o, mu, atol=1e-4)
    assert torch.allclose(sd_o, sd[perm], atol=1e-4)


def test_partners_are_a_random_permutation_and_prob_zero_is_identity(batch):
    fixed = 0
    for seed in range(30):
        perm = partner_permutation(4, torch.Generator().manual_seed(seed))
        assert sorted(perm.tolist()) == [0, 1, 2, 3]
        fixed += int((perm == torch.arange(4)).any())
    assert fixed > 0  # as the original's randperm: an image may meet itself
    assert torch.equal(augin(batch, "both", prob=0.0), batch)
    with pytest.raises(ValueError, match="mode"):
        augin(batch, "median")
