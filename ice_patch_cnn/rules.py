"""Image-level decision from chunk probabilities (section 5 of the paper, as we read it).

For one HiRISE image with chunk probabilities ``p``: ``m`` is their mean and ``f`` the share of
"icy" chunks (``p >= icy_p``, 0.6). The paper's text, restated as rules:

* **good**: ``f > 0.5 and m > 0.6``, or ``f <= 0.5``, at least one icy chunk and ``m > 0.2``;
* **hard** (to identify): ``f > 0.5 and 0.4 <= m <= 0.6``, or ``f <= 0.5`` with more than one
  icy chunk (``n_icy >= 2``) and ``m >= 0.01``;
* **bad**: anything else (also an image without any valid chunk).

Readings of the ambiguous text, all configurable in the ``rules:`` section of a profile:
"more than half of the chunks" is ``f > majority_share``; "less than half" is taken as the
complement ``f <= majority_share`` so that every image gets exactly one branch; "more than 1
chunk" is ``n_icy >= hard_min_icy_chunks`` (2); "the minimum percentage was 1 %" is
``m >= hard_mean_minority``; the good rule is tested before the hard rule. "If the amount of
icy chunks is less than half" is read as speaking of images that have icy chunks: the minority
good branch needs ``n_icy >= good_min_icy_chunks`` (1). The paper counts its 98 images "with no
icy chunk at all" apart from its good and hard images, and an image without any chunk at
``p >= 0.6`` cannot show the patches it is called good for; without this condition an
uncalibrated model whose probabilities all sit near 0.21 would call every image good while
finding no icy chunk anywhere. ``good_min_icy_chunks: 0`` restores the bare text. A chunk whose
probability lies in the band ``chunk_hard_low <= p <= chunk_hard_high`` (0.4-0.6) is labelled
"hard" at chunk level (that label wins over "ice" at exactly p = 0.6, while ``f`` still counts
p = 0.6 as icy, as the image rule says "at least 60 %").

**Every chunk in the hard band** (our decision, not in the paper's text): an image with no icy
chunk whose every chunk lies in ``chunk_hard_low <= p <= chunk_hard_high`` (e.g. ten chunks at
0.5, or a single chunk at 0.55) is called **hard**, branch "all chunks in 0.4-0.6". The bare
text would call it good when ``m > 0.2`` (no icy chunk is asked for), our icy-chunk reading
would call it bad; neither fits an image on which the classifier is unsure everywhere, which is
what the paper's "hard to identify" category is for (an image a person should look at).
``uncertain_image: bad`` restores the plain reading. Comparisons are made on ``m`` and ``f``
rounded to 9 decimals, so that a mean that is 0.6 on paper (three chunks at 0.6) is 0.6 and
not 0.6000000000000001 in floating point.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from shared.errors import UserError

DECISIONS = ("good", "hard", "bad")
CHUNK_LABELS = ("ice", "hard", "no_ice")


@dataclass(frozen=True)
class Rules:
    """Thresholds of the image-level decision (defaults: the paper's numbers)."""

    icy_p: float = 0.6
    majority_share: float = 0.5
    good_mean_majority: float = 0.6
    good_mean_minority: float = 0.2
    good_min_icy_chunks: int = 1
    hard_mean_low: float = 0.4
    hard_mean_high: float = 0.6
    hard_min_icy_chunks: int = 2
    hard_mean_minority: float = 0.01
    chunk_hard_low: float = 0.4
    chunk_hard_high: float = 0.6
    uncertain_image: str = "hard"

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> Rules:
        """Build from a profile's ``rules:`` mapping; unknown keys are an error."""
        section = dict(section or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(section) - known)
        if unknown:
            raise UserError(f"unknown rules setting(s) {unknown}; known: {sorted(known)}")
        rules = cls(**section)
        rules.validate()
        return rules

    def validate(self) -> None:
        for name in ("icy_p", "majority_share", "good_mean_majority", "good_mean_minority",
                     "hard_mean_low", "hard_mean_high", "hard_mean_minority",
                     "chunk_hard_low", "chunk_hard_high"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise UserError(f"rules.{name} must be in [0, 1], got {value}")
        if self.hard_mean_low > self.hard_mean_high:
            raise UserError("rules.hard_mean_low must not exceed rules.hard_mean_high")
        if self.chunk_hard_low > self.chunk_hard_high:
            raise UserError("rules.chunk_hard_low must not exceed rules.chunk_hard_high")
        if self.uncertain_image not in ("hard", "bad"):
            raise UserError(f"rules.uncertain_image must be 'hard' or 'bad', "
                            f"got {self.uncertain_image!r}")
        for name in ("hard_min_icy_chunks", "good_min_icy_chunks"):
            if int(getattr(self, name)) < 0:
                raise UserError(f"rules.{name} must be >= 0")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ImageCall:
    """Statistics of one image and its decision."""

    n_chunks: int
    mean_p: float
    n_icy: int
    share_icy: float
    n_hard_chunks: int
    max_p: float
    decision: str
    reason: str


ROUND = 9  # decimals of m and f before the comparisons (see the module docstring)
UNCERTAIN_REASON = "no icy chunk, all chunks in 0.4-0.6"


def decide(mean_p: float, share_icy: float, n_icy: int, rules: Rules = Rules(),
           all_uncertain: bool = False) -> tuple[str, str]:
    """The decision and the branch that produced it, from the image statistics.

    ``all_uncertain``: every chunk lies in the chunk-level hard band (see the module docstring).
    """
    m, f = round(float(mean_p), ROUND), round(float(share_icy), ROUND)
    if f > rules.majority_share:
        if m > rules.good_mean_majority:
            return "good", "f>0.5, m>0.6"
        if rules.hard_mean_low <= m <= rules.hard_mean_high:
            return "hard", "f>0.5, 0.4<=m<=0.6"
        return "bad", "f>0.5, m<0.4"
    if all_uncertain and n_icy == 0 and rules.uncertain_image == "hard":
        return "hard", UNCERTAIN_REASON
    if n_icy >= rules.good_min_icy_chunks and m > rules.good_mean_minority:
        return "good", "f<=0.5, icy chunk(s), m>0.2"
    if n_icy >= rules.hard_min_icy_chunks and m >= rules.hard_mean_minority:
        return "hard", "f<=0.5, >1 icy chunk, m>=0.01"
    return "bad", "f<=0.5, too few icy chunks or m<0.01"


def chunk_label(p: float, rules: Rules = Rules()) -> str:
    """Chunk-level label: "hard" inside the 0.4-0.6 band, else "ice" (p >= icy_p) or "no_ice"."""
    p = float(p)
    if rules.chunk_hard_low <= p <= rules.chunk_hard_high:
        return "hard"
    return "ice" if p >= rules.icy_p else "no_ice"


def classify_image(probs: Iterable[float], rules: Rules = Rules()) -> ImageCall:
    """Apply the rules to the chunk probabilities of one image."""
    p = np.asarray(list(probs), dtype=np.float64).ravel()
    if p.size and (not np.isfinite(p).all() or p.min() < 0 or p.max() > 1):
        raise ValueError("chunk probabilities must be finite and within [0, 1]")
    if p.size == 0:
        return ImageCall(0, 0.0, 0, 0.0, 0, 0.0, "bad", "no valid chunk")
    n_icy = int((p >= rules.icy_p).sum())
    share = n_icy / p.size
    mean = math.fsum(p.tolist()) / p.size
    n_hard = int(((p >= rules.chunk_hard_low) & (p <= rules.chunk_hard_high)).sum())
    decision, reason = decide(mean, share, n_icy, rules, all_uncertain=n_hard == p.size)
    return ImageCall(int(p.size), mean, n_icy, share, n_hard, float(p.max()), decision, reason)
