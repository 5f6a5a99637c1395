import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("OMP_NUM_THREADS", "2")


# ------------------------------------------------------------------ stand-in crater models
import numpy as _np
import pytest as _pytest


class DiscDetector:
    """A deterministic stand-in for a trained crater model (``input_shape``, ``predict`` like
    Keras, and callable as ``predict_fn(batch) -> (N, th, tw)``): in each tile it marks bright
    blobs (grey > 0.5) whose equivalent-circle diameter is within [dmin, dmax] model pixels
    (blobs cut by the tile border: when their extent is at most dmax), so one scale sees only
    a limited crater size range. Marked pixels get 0.9 in even columns and 0.49 in odd ones
    (the striped output of an under-trained model); the rest 0.03."""

    def __init__(self, tile: int = 64, dmin: float = 4.0, dmax: float = 20.0):
        self.input_shape = (None, tile, tile, 3)
        self.dmin, self.dmax = dmin, dmax
        self.calls = 0

    def __call__(self, batch):
        from scipy import ndimage

        batch = _np.asarray(batch, _np.float32)
        out = _np.full(batch.shape[:3], 0.03, _np.float32)
        stripes = _np.where(_np.arange(batch.shape[2]) % 2 == 0, 0.9, 0.49).astype(_np.float32)
        for i, tile in enumerate(batch):
            lab, n = ndimage.label(tile.mean(-1) > 0.5)
            for k, sl in enumerate(ndimage.find_objects(lab), start=1):
                comp = lab[sl] == k
                d = 2 * _np.sqrt(comp.sum() / _np.pi)
                extent = max(comp.shape)
                border = (sl[0].start == 0 or sl[1].start == 0 or sl[0].stop == tile.shape[0]
                          or sl[1].stop == tile.shape[1])
                if (self.dmin <= d <= self.dmax and not border) or (border and
                                                                     extent <= self.dmax):
                    out[i][sl][comp] = _np.broadcast_to(stripes[sl[1]], comp.shape)[comp]
        self.calls += len(batch)
        return out

    def predict(self, x, verbose=0):
        return self(x)[..., None]


@_pytest.fixture
def disc_detector():
    return DiscDetector
