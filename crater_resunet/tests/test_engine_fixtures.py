"""The crater predictors after the move to ``shared.engine`` give the outputs they gave
before it (``fixtures/engine_before.npz``, made by ``engine_fixture_inputs.py`` with the code
of the day before the move): probabilities within 1e-5, the same masks and catalogues
(issue 25). The crater blend stayed the plain average (``pyramid.BLEND = "constant"``)."""

import numpy as np
import pytest

from crater_resunet.tests import engine_fixture_inputs as fx

ATOL = 1e-5


@pytest.fixture(scope="module")
def before():
    with np.load(fx.FIXTURE) as z:
        return dict(z)


@pytest.fixture(scope="module")
def after(tmp_path_factory):
    return fx.outputs(tmp_path_factory.mktemp("after"))


def _close(a, b):
    np.testing.assert_allclose(a, b, atol=ATOL, rtol=0, equal_nan=True)


@pytest.mark.parametrize("key", ["image_tile", "image_tile_default_overlap", "image_resize",
                                 "pyramid_tiles", "pyramid_small", "tif_prob", "tif_prob_s05"])
def test_probabilities_as_before(before, after, key):
    assert after[key].shape == before[key].shape
    _close(after[key], before[key])


def test_raster_mask_as_before(before, after):
    np.testing.assert_array_equal(after["tif_mask"], before["tif_mask"])


@pytest.mark.parametrize("kind", ["png", "tif"])
def test_catalogue_as_before(before, after, kind):
    for col in ("x", "y", "diameter", "confidence"):
        key = f"{kind}_cat_{col}"
        assert len(after[key]) == len(before[key]) > 0
        np.testing.assert_allclose(after[key], before[key], atol=1e-3)  # 4 decimals in the CSV
