"""The dune mapper's maps equal those of the code before the shared engine (issue 25): the
fixture ``fixtures/mapper_before.npz`` was recorded by ``fixtures/mapper_fixture.py`` on the
pre-engine mapper, with a fixed model whose windows disagree, so the blend rule shows."""

import numpy as np
import pytest

from dune_vlm.tests.fixtures.mapper_fixture import CASES, FIXTURE, run_case


def _near_tie(probs: np.ndarray, tol: float = 2e-3) -> np.ndarray:
    top2 = np.sort(probs.astype(np.float32), axis=0)[-2:]
    return top2[1] - top2[0] <= tol


@pytest.mark.parametrize("name,height,width,kw", CASES, ids=[c[0] for c in CASES])
def test_map_equals_the_pre_engine_record(tmp_path, name, height, width, kw):
    before = np.load(FIXTURE)
    now = run_case(tmp_path, name, height, width, kw)
    cls0, conf0 = before[f"{name}_class"], before[f"{name}_confidence"]
    assert now["class"].shape == cls0.shape == (height, width)
    assert np.array_equal(now["class"] == 255, cls0 == 255)  # the same nodata pixels
    ties = _near_tie(before[f"{name}_probs"]) & (cls0 != 255)
    assert ties.mean() < 0.01
    assert np.array_equal(now["class"][~ties], cls0[~ties])
    # confidence is the blended max probability x 100, rounded: equal up to the rounding
    diff = np.abs(now["confidence"].astype(int) - conf0.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99
