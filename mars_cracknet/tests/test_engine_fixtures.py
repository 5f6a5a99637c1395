"""Mars-CrackNet predict after the move to ``shared.engine`` gives the outputs it gave before
(``fixtures/engine_before.npz``, made by ``engine_fixture_inputs.py`` with the code before the
move): probabilities within 1e-5 on valid pixels, masks equal, probability PNG/GeoTIFF equal
but for rounding at a half step (issue 25). The blend stayed Mars-CrackNet's linear ramp; the
fixture raster is 8-bit RGB with values 1..255 and nodata 0, which the old reader and
``shared.rasters.Scene`` read the same way."""

import numpy as np
import pytest

from mars_cracknet.tests import engine_fixture_inputs as fx


@pytest.fixture(scope="module")
def before():
    with np.load(fx.FIXTURE) as z:
        return dict(z)


@pytest.fixture(scope="module")
def after(tmp_path_factory):
    import torch

    torch.set_num_threads(2)
    tmp = tmp_path_factory.mktemp("after")
    for kind in ("png", "tif"):
        (tmp / kind).mkdir()
    return fx.outputs(tmp)


@pytest.mark.parametrize("kind", ["png", "tif"])
def test_probability_as_before(before, after, kind):
    old, new = before[f"{kind}_prob_float"], after[f"{kind}_prob_float"]
    assert new.shape == old.shape
    valid = np.isfinite(new)
    if kind == "tif":  # the nodata block: no probability now (was the model's guess on 0s)
        assert not valid[50:70, 10:40].any() and valid.sum() == valid.size - 20 * 30
    np.testing.assert_allclose(new[valid], old[valid], atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["png", "tif"])
def test_mask_and_probability_files_as_before(before, after, kind):
    np.testing.assert_array_equal(after[f"{kind}_mask"], before[f"{kind}_mask"])
    diff = np.abs(after[f"{kind}_prob"].astype(int) - before[f"{kind}_prob"].astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01
