import numpy as np
import pytest

from shared.tiles import iter_windows


def _coverage(h, w, wins):
    cov = np.zeros((h, w), int)
    for t in wins:
        cov[t.slices] += 1
    return cov


def test_exact_grid():
    wins = list(iter_windows(64, 96, 32))
    assert len(wins) == 6
    assert all(t.height == t.width == 32 for t in wins)
    assert (_coverage(64, 96, wins) == 1).all()


def test_shift_edge_keeps_full_tiles_inside():
    wins = list(iter_windows(100, 70, 32, stride=24))
    assert all(t.row + t.height <= 100 and t.col + t.width <= 70 for t in wins)
    assert all(t.height == 32 and t.width == 32 for t in wins)
    assert (_coverage(100, 70, wins) >= 1).all()
    assert wins[-1].row == 68 and wins[-1].col == 38


def test_pad_edge_reaches_past_and_reports_valid():
    wins = list(iter_windows(50, 50, 32, edge="pad"))
    assert len(wins) == 4
    last = wins[-1]
    assert (last.row, last.col, last.height, last.valid_height) == (32, 32, 32, 18)
    assert (_coverage(50, 50, wins) == 1).all()


def test_drop_edge_and_small_images():
    assert len(list(iter_windows(50, 50, 32, edge="drop"))) == 1
    assert list(iter_windows(10, 10, 32, edge="drop")) == []
    (only,) = iter_windows(10, 12, 32)  # image smaller than a tile: one clipped window
    assert (only.height, only.width) == (10, 12)


def test_bad_arguments():
    with pytest.raises(ValueError, match="edge"):
        list(iter_windows(10, 10, 4, edge="wrap"))
    with pytest.raises(ValueError, match="stride"):
        list(iter_windows(10, 10, 4, stride=0))
    with pytest.raises(ValueError, match="height"):
        list(iter_windows(0, 10, 4))
