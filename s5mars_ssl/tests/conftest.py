import os

import pytest

from s5mars_ssl.runtime import passive_openmp

passive_openmp()  # before torch is imported
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A tiny synthetic S5Mars-layout dataset with proposer SAM masks (64 x 64 px scenes)."""
    from s5mars_ssl.data.synthetic import generate
    from s5mars_ssl.sam_masks import run

    root = tmp_path_factory.mktemp("s5mars") / "synthetic"
    generate(root, n_train=6, n_test=2, height=64, width=80, labeled_every=3, seed=1,
             progress=False)
    run(root / "images", root / "sam_masks", progress=False)
    return root
