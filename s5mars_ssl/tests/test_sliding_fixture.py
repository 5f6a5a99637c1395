"""S5Mars sliding-window outputs equal those of the code before the shared engine (issue 25):
``fixtures/sliding_before.npz`` was recorded by ``fixtures/sliding_fixture.py`` on the pre-engine
plain-average window loop, with a fixed model whose windows disagree."""

import json

import numpy as np
import pytest
import torch

from s5mars_ssl.tests.fixtures import sliding_fixture as fx


@pytest.fixture(scope="module")
def before():
    return np.load(fx.FIXTURE)


def test_sliding_probabilities_equal_the_record(before):
    model = fx.make_model()
    for name, x in zip(("large", "small"), fx.tensors(fx.make_images())):
        with torch.no_grad():
            prob = fx.sliding_probs(model, x)
        assert tuple(prob.shape) == (1, *before[f"{name}_probs"].shape)
        np.testing.assert_allclose(prob[0].numpy(), before[f"{name}_probs"], atol=1e-5)


def test_sliding_evaluation_equals_the_record(before):
    images = fx.make_images()
    res = fx.evaluate_sliding(fx.make_model(), images, fx.make_labels(images))
    ref = json.loads(str(before["evaluate"]))
    assert res["gt_pixels"] == ref["gt_pixels"]
    for key in ("miou", "miou_all", "pixel_acc"):
        assert res[key] == pytest.approx(ref[key], abs=1e-9)
    assert res["iou"] == pytest.approx(ref["iou"], abs=1e-9)


@pytest.mark.parametrize("sliding", [True, False], ids=["sliding", "whole"])
def test_predicted_id_masks_equal_the_record(tmp_path, before, sliding):
    images = fx.make_images()
    ids = fx.predict_ids(tmp_path, fx.make_model(), images, sliding)
    for name, got in zip(("large", "small"), ids):
        ref = before[f"{name}_ids_{'sliding' if sliding else 'whole'}"]
        assert np.array_equal(got, ref)
