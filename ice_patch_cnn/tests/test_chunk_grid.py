"""The chunk grid comes from the one planner (shared.tiles.iter_windows, issue 25) and is the
grid the chunker used before: rows and columns every ``size`` px from 0, the last ones
reaching past the edge."""

import pytest

from ice_patch_cnn.chunk import grid_rows


@pytest.mark.parametrize("h,w,size", [(1024, 1024, 1024), (3000, 2050, 1024), (100, 5000, 256),
                                      (10, 10, 1024), (2048, 4096, 512)])
def test_grid_is_the_old_grid(h, w, size):
    old = [(gr * size, [gc * size for gc in range(-(-w // size))])
           for gr in range(-(-h // size))]
    assert grid_rows(h, w, size) == old
