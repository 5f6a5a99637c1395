"""Every crater size: an image pyramid, independent of Keras.

A model sees craters of a limited size range (a few pixels to about half its input tile). To
catalogue craters from a few pixels to the size of the image, the image is predicted at the
scales ``1, 1/2, 1/4, ...`` (:func:`auto_scales`: down to the scale at which the whole image
fits one model tile) or at explicit ones (``"1,0.5,0.25"``), craters are extracted at each scale
(:func:`crater_resunet.craters.extract_craters`), brought back to input pixels (``scale``
column) and merged across scales by the crater NMS.

The model is any ``predict_fn(batch (N, th, tw, 3) float32) -> (N, th, tw) probabilities``
(:func:`as_predictor` wraps a Keras model), so this module is testable without TensorFlow.
Invalid pixels (nodata) are filled with the local mean of the valid ones before the forward
(:func:`fill_invalid`), never with 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from crater_resunet import craters as cr
from shared.errors import UserError

PredictFn = Callable[[np.ndarray], np.ndarray]


def as_predictor(model) -> tuple[PredictFn, tuple[int, int]]:
    """``(predict_fn, (th, tw))`` of a Keras-like model (``input_shape``, ``predict``)."""
    th, tw = (int(v) for v in model.input_shape[1:3])

    def predict_fn(batch: np.ndarray) -> np.ndarray:
        p = np.asarray(model.predict(np.asarray(batch, np.float32), verbose=0))
        return p[..., 0] if p.ndim == 4 else p

    return predict_fn, (th, tw)


def fill_invalid(image: np.ndarray, valid: np.ndarray | None, sigma: float = 16.0,
                 default: float = 0.5) -> np.ndarray:
    """Invalid pixels of an (H, W[, C]) float image replaced by the local mean of the valid ones
    (normalised Gaussian of ``sigma`` px; farther away: the mean of all valid pixels;
    ``default`` when none is valid). Valid pixels are unchanged."""
    from scipy.ndimage import gaussian_filter

    img = np.asarray(image, np.float32)
    if valid is None:
        return img
    valid = np.asarray(valid, bool)
    if valid.all():
        return img
    out = img.copy()
    if not valid.any():
        out[...] = default
        return out
    chans = img[..., None] if img.ndim == 2 else img
    o = out[..., None] if out.ndim == 2 else out
    w = gaussian_filter(valid.astype(np.float32), sigma, mode="nearest")
    for c in range(chans.shape[-1]):
        band = np.where(valid, chans[..., c], 0.0).astype(np.float32)
        mean = float(band[valid].mean())
        num = gaussian_filter(band, sigma, mode="nearest")
        local = np.where(w > 1e-3, num / np.maximum(w, 1e-3), mean)
        o[..., c] = np.where(valid, chans[..., c], local)
    return out


def resolve_overlap(overlap: int | None, th: int, tw: int) -> int:
    """The tile overlap in pixels: a quarter of the model tile by default; checked."""
    if overlap is None:
        overlap = min(th, tw) // 4
    if not 0 <= overlap < min(th, tw):
        raise UserError(f"overlap must be in [0, {min(th, tw)}) for this {th}x{tw} model, "
                        f"got {overlap}")
    return overlap


def channels_first(predict_fn: PredictFn) -> Callable[[np.ndarray], np.ndarray]:
    """An (N, th, tw, 3) ``predict_fn`` as the engine's (N, 3, th, tw) callback."""
    def fn(batch: np.ndarray) -> np.ndarray:
        return predict_fn(np.ascontiguousarray(np.moveaxis(batch, 1, -1)))

    return fn


# The crater model's blend: the plain average of the windows (the original code predicts one
# tile at a time and has no rule for overlaps; ``shared.engine`` offers the others).
BLEND = "constant"


def tiled_probability(image: np.ndarray, predict_fn: PredictFn, tile: tuple[int, int],
                      overlap: int | None = None, batch_size: int = 8, pad: str = "reflect",
                      blend: str = BLEND) -> np.ndarray:
    """(H, W) probability of an (H, W, 3) float image: overlapping model tiles (``overlap``
    px, a quarter tile by default) through ``shared.engine``, blended by ``blend``; an image
    smaller than a tile is padded (``pad``: ``reflect``, or ``zero``)."""
    from shared.engine import predict_array

    th, tw = tile
    overlap = resolve_overlap(overlap, th, tw)
    h, w = image.shape[:2]
    ph, pw = max(h, th), max(w, tw)
    img = np.asarray(image, np.float32)
    if (ph, pw) != (h, w) and pad == "zero":
        img = np.pad(img, ((0, ph - h), (0, pw - w), (0, 0)))
    elif (ph, pw) != (h, w):
        mode = "reflect" if h > 1 and w > 1 else "edge"
        img = np.pad(img, ((0, ph - h), (0, pw - w), (0, 0)), mode=mode)
        while img.shape[0] < ph or img.shape[1] < pw:  # reflect once is not enough
            img = np.pad(img, ((0, max(0, ph - img.shape[0])), (0, max(0, pw - img.shape[1])),
                               (0, 0)), mode="symmetric")
        img = img[:ph, :pw]
    prob = predict_array(np.moveaxis(img, -1, 0), channels_first(predict_fn), (th, tw),
                         stride=(th - overlap, tw - overlap), edge="shift", blend=blend,
                         batch_size=batch_size)
    return prob[0, :h, :w]


def auto_scales(height: int, width: int, tile: int | tuple[int, int],
                base: float = 1.0) -> list[float]:
    """``base * 2^-k`` for k = 0, 1, ... down to the first scale at which the whole image
    (``height`` x ``width`` input pixels) fits one model tile: the largest crater the image can
    hold is then inside the model's size range, and scale ``base`` keeps the smallest craters
    the model resolves at the training scale."""
    t = min(tile) if isinstance(tile, (tuple, list)) else int(tile)
    scales = [float(base)]
    while max(height, width) * scales[-1] > t and len(scales) < 20:
        scales.append(scales[-1] / 2)
    return scales


def parse_scales(text: str | Sequence[float] | None):
    """``None`` -> None (one scale); ``"auto"`` -> ``"auto"``; ``"1,0.5,0.25"`` or a sequence ->
    a list of positive floats. A malformed value is a ``UserError`` naming it."""
    if text is None:
        return None
    if isinstance(text, str):
        if text.strip().lower() == "auto":
            return "auto"
        try:
            vals = [float(v) for v in text.replace(" ", "").split(",") if v]
        except ValueError:
            raise UserError(f"--scales must be 'auto' or a comma-separated list of positive "
                            f"numbers like 1,0.5,0.25; got {text!r}") from None
    else:
        vals = [float(v) for v in text]
    if not vals or not all(np.isfinite(v) and v > 0 for v in vals):
        raise UserError(f"--scales must be 'auto' or positive numbers, got {text!r}")
    return sorted(set(vals), reverse=True)


def resize_image(image: np.ndarray, valid: np.ndarray | None, scale: float
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """An (H, W, C) image and its validity at ``scale`` (area averaging when shrinking); a
    pixel stays valid when every input pixel under it is."""
    import cv2

    if scale == 1.0:
        return image, valid
    h, w = image.shape[:2]
    oh, ow = max(1, round(h * scale)), max(1, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out = cv2.resize(np.asarray(image, np.float32), (ow, oh), interpolation=interp)
    if out.ndim == 2:
        out = out[..., None]
    v = None
    if valid is not None:
        v = cv2.resize(np.asarray(valid, np.float32), (ow, oh), interpolation=interp) > 0.999
    return out, v


def pyramid_craters(image: np.ndarray, predict_fn: PredictFn, tile: tuple[int, int],
                    scales: Sequence[float] | str = "auto", *, valid: np.ndarray | None = None,
                    overlap: int | None = None, batch_size: int = 8,
                    min_area: float = 4.0, nms: bool = True, return_prob: bool = False,
                    **extract_kw):
    """Craters of an (H, W, 3) float image in [0, 1] at every scale, in input pixels, merged
    by the crater NMS (``scale`` column: the scale each kept crater was found at).

    ``min_area`` is in model pixels at every scale (the smallest blob the model resolves);
    ``extract_kw`` go to :func:`crater_resunet.craters.extract_craters` (``threshold``,
    ``sigma``, ``closing``, ``drop_nodata``, ...). With ``return_prob`` also the probability
    map of the first (finest) scale, resized to the input.
    """
    import cv2

    h, w = image.shape[:2]
    if isinstance(scales, str):
        scales = auto_scales(h, w, tile) if scales == "auto" else parse_scales(scales)
    tables, first = [], None
    for s in sorted(scales, reverse=True):
        img_s, valid_s = resize_image(image, valid, s)
        x = fill_invalid(img_s, valid_s)
        prob = tiled_probability(x, predict_fn, tile, overlap, batch_size)
        t = cr.extract_craters(prob, valid_s, min_area=min_area, nms=False, **extract_kw)
        tables.append(cr.scaled(t, s))
        if return_prob and first is None:
            first = prob if prob.shape[:2] == (h, w) else cv2.resize(
                prob, (w, h), interpolation=cv2.INTER_LINEAR)
            if valid is not None:
                first = np.where(valid, first, np.nan)
    table = cr.concat(tables)
    if nms:
        table = cr.crater_nms(table)
    return (table, first) if return_prob else table
