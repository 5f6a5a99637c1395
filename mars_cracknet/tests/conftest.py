"""Shared fixtures: a tiny synthetic dataset (64x64 images) generated once per session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session", autouse=True)
def _threads():
    import torch

    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    from mars_cracknet.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("cracks") / "data"
    generate_dataset(root, seed=1, n_mars_large=1, large_size=128, crops_per_large=4,
                     crop_size=64, n_mars_test=2, test_size=64, n_earth=2, earth_size=64,
                     n_earth_unlabelled=2, n_mars_unlabelled=2, unlabelled_size=64)
    return root
