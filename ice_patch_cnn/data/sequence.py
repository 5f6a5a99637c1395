"""Chunk batches for ``model.fit`` and ``model.evaluate``: a ``keras.utils.PyDataset``.

Batch ``i`` is a pure function of ``i`` and the run's seed, never of what was read before, so
the prefetching thread of ``tf.data`` (or any worker) cannot change what a step sees:

* training (``seed`` given): an endless sequence whose index counts batches from the first
  epoch of this session (``first_epoch``, 1-based); batch ``b`` of epoch ``e`` holds the chunks
  ``order(e)[start:end]`` of ``batch_bounds``, where ``order(e)`` is a permutation drawn from
  ``derive_seed(seed, "shuffle", e)``. ``model.fit`` reads it with ``steps_per_epoch``, so a run
  resumed at epoch ``e`` reads exactly what an uninterrupted run read from epoch ``e`` on.
* evaluation (``seed=None``): the chunks once, in their order.

No augmentation (the paper's training used none). Chunks come as float32 (N, size, size, 1)
in the 0-255 range (the model rescales); labels as float32 (N, 1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np

from shared.runs import derive_seed


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, end) of each batch; a last batch of a single chunk joins the one before (the
    batch-normalisation statistics of one sample are degenerate)."""
    bounds = [(s, min(n, s + batch_size)) for s in range(0, n, batch_size)]
    if len(bounds) >= 2 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


class ChunkBatches(keras.utils.PyDataset):
    """Batches of chunk files; ``read(path)`` decodes one chunk to (size, size) uint8.

    ``cache``: a dict shared between sequences keeps decoded chunks in memory (quick profile).
    """

    def __init__(self, files: Sequence[str], labels: np.ndarray, batch_size: int,
                 read: Callable[[str], np.ndarray], *, seed: int | None = None,
                 first_epoch: int = 1, cache: dict | None = None):
        super().__init__()  # one worker: tf.data's prefetch already reads one batch ahead
        self.files = [str(f) for f in files]
        self.labels = np.asarray(labels, dtype=np.float32).reshape(-1, 1)
        self.bounds = batch_bounds(len(self.files), int(batch_size))
        self.read, self.seed, self.first_epoch = read, seed, int(first_epoch)
        self.cache = cache
        self._orders: dict[int, np.ndarray] = {}

    @property
    def num_batches(self) -> int | None:
        return None if self.seed is not None else len(self.bounds)

    @property
    def batches_per_epoch(self) -> int:
        return len(self.bounds)

    def __len__(self) -> int:
        return len(self.bounds)

    def order(self, epoch: int) -> np.ndarray:
        """The chunk indices of ``epoch`` (1-based) in their shuffled order."""
        if epoch not in self._orders:
            rng = np.random.default_rng(derive_seed(int(self.seed), "shuffle", epoch))
            self._orders = {epoch: rng.permutation(len(self.files))}  # one epoch at a time
        return self._orders[epoch]

    def indices(self, index: int) -> np.ndarray:
        """The chunk indices of batch ``index`` of this sequence."""
        if self.seed is None:
            start, end = self.bounds[index]
            return np.arange(start, end)
        epoch, batch = divmod(int(index), len(self.bounds))
        start, end = self.bounds[batch]
        return self.order(self.first_epoch + epoch)[start:end]

    def _chunk(self, path: str) -> np.ndarray:
        if self.cache is None:
            return self.read(path)
        if path not in self.cache:
            self.cache[path] = self.read(path)
        return self.cache[path]

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        idx = self.indices(index)
        x = np.stack([self._chunk(self.files[i]) for i in idx])[..., None].astype(np.float32)
        return x, self.labels[idx]
