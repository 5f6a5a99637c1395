"""The image-level rules on crafted probability lists: every branch and every boundary."""

import numpy as np
import pytest

from ice_patch_cnn.rules import Rules, chunk_label, classify_image, decide


@pytest.mark.parametrize(
    ("probs", "decision", "reason"),
    [
        # f > 0.5 (3 of 4 icy) and m > 0.6 -> good
        ([0.9, 0.9, 0.9, 0.1], "good", "f>0.5, m>0.6"),
        # f > 0.5 and m == 0.6 exactly -> not good (strict), hard (inclusive upper bound)
        ([0.6, 0.6], "hard", "f>0.5, 0.4<=m<=0.6"),
        # f > 0.5 and m within the band
        ([0.7, 0.7, 0.0], "hard", "f>0.5, 0.4<=m<=0.6"),
        # f <= 0.5 (exactly half icy) and m > 0.2 -> good
        ([0.9, 0.0], "good", "f<=0.5, icy chunk(s), m>0.2"),
        # f <= 0.5, m == 0.2 exactly is not good; two icy chunks, m >= 0.01 -> hard
        ([0.6, 0.6, 0.0, 0.0, 0.0, 0.0], "hard", "f<=0.5, >1 icy chunk, m>=0.01"),
        # f <= 0.5, only one icy chunk, m <= 0.2 -> bad
        ([0.9] + [0.0] * 9, "bad", "f<=0.5, too few icy chunks or m<0.01"),
        # no icy chunk at all -> bad
        ([0.5, 0.1, 0.0], "bad", "f<=0.5, too few icy chunks or m<0.01"),
        # f <= 0.5, two icy chunks but mean below 1 % -> bad (the paper's 0.03 % image)
        ([0.6, 0.6] + [0.0] * 198, "bad", "f<=0.5, too few icy chunks or m<0.01"),
    ],
)
def test_branches_on_probability_lists(probs, decision, reason):
    call = classify_image(probs)
    assert (call.decision, call.reason) == (decision, reason)
    assert call.n_chunks == len(probs)
    assert call.n_icy == sum(p >= 0.6 for p in probs)


# The table of issue 15: chunk probabilities -> decision and branch (the README states each).
TABLE = [
    ("4 x 0.7", [0.7] * 4, "good", "f>0.5, m>0.6"),
    ("[.6,.6,.6,0]", [0.6, 0.6, 0.6, 0.0], "hard", "f>0.5, 0.4<=m<=0.6"),
    ("[.6,.6,.6,0,0]", [0.6, 0.6, 0.6, 0.0, 0.0], "bad", "f>0.5, m<0.4"),
    ("[.6,.6,.6]", [0.6, 0.6, 0.6], "hard", "f>0.5, 0.4<=m<=0.6"),
    ("[.6,0]", [0.6, 0.0], "good", "f<=0.5, icy chunk(s), m>0.2"),
    ("[.9,.9,.1,.1]", [0.9, 0.9, 0.1, 0.1], "good", "f<=0.5, icy chunk(s), m>0.2"),
    ("10 x 0.5", [0.5] * 10, "hard", "no icy chunk, all chunks in 0.4-0.6"),
    ("10 x 0.25", [0.25] * 10, "bad", "f<=0.5, too few icy chunks or m<0.01"),
    ("[0.55]", [0.55], "hard", "no icy chunk, all chunks in 0.4-0.6"),
    ("[.99] + 9 x .05", [0.99] + [0.05] * 9, "bad", "f<=0.5, too few icy chunks or m<0.01"),
    ("[.99,.99] + 8 x .01", [0.99, 0.99] + [0.01] * 8, "good", "f<=0.5, icy chunk(s), m>0.2"),
    ("[.7,.7] + 98 x 0", [0.7, 0.7] + [0.0] * 98, "hard", "f<=0.5, >1 icy chunk, m>=0.01"),
    ("[.7,.7] + 198 x 0", [0.7, 0.7] + [0.0] * 198, "bad",
     "f<=0.5, too few icy chunks or m<0.01"),
    ("no chunks", [], "bad", "no valid chunk"),
]


@pytest.mark.parametrize(("case", "probs", "decision", "reason"), TABLE,
                         ids=[row[0] for row in TABLE])
def test_issue_table_of_image_decisions(case, probs, decision, reason):
    call = classify_image(probs)
    assert (call.decision, call.reason) == (decision, reason), case
    # the same list in another order gives the same call
    assert classify_image(probs[::-1]).decision == decision


def test_every_chunk_in_the_hard_band_is_hard_unless_configured_bad():
    assert classify_image([0.4, 0.6 - 1e-9, 0.5]).decision == "hard"
    assert classify_image([0.5] * 10, Rules(uncertain_image="bad")).decision == "bad"
    # the bare text (no icy chunk needed for "good") would call 10 x 0.5 good (m = 0.5 > 0.2)
    bare = Rules(good_min_icy_chunks=0, uncertain_image="bad")
    assert classify_image([0.5] * 10, bare).decision == "good"
    # one chunk outside the band: the ordinary rules decide (here: bad, no icy chunk)
    assert classify_image([0.5] * 9 + [0.39]).decision == "bad"
    with pytest.raises(ValueError, match="uncertain_image"):
        Rules.from_config({"uncertain_image": "maybe"})


def test_no_icy_chunk_is_never_good_or_hard():
    # the contradiction of an uncalibrated model: every p ~ 0.205, so m > 0.2 but no icy chunk
    flat = [0.205] * 50
    call = classify_image(flat)
    assert call.n_icy == 0 and call.decision == "bad"
    # the bare text (good_min_icy_chunks = 0) would call it good
    assert classify_image(flat, Rules(good_min_icy_chunks=0)).decision == "good"
    assert decide(0.21, 0.0, 0) == ("bad", "f<=0.5, too few icy chunks or m<0.01")
    assert decide(0.21, 0.02, 1)[0] == "good"           # one icy chunk is enough
    rng = np.random.default_rng(0)
    for _ in range(500):
        probs = rng.uniform(0.0, 0.5999, rng.integers(1, 40))
        probs[0] = min(probs[0], 0.39)     # not every chunk in the hard band
        assert classify_image(probs).decision == "bad"


def test_majority_branch_below_the_hard_band_is_bad():
    # f > 0.5 needs p >= 0.6 on most chunks, so m < 0.4 only with crafted statistics
    assert decide(0.39, 0.51, 10) == ("bad", "f>0.5, m<0.4")
    assert decide(0.4, 0.51, 10)[0] == "hard"          # inclusive lower bound
    assert decide(0.6000001, 0.51, 10)[0] == "good"    # strictly above 0.6


def test_boundaries_of_the_minority_branch():
    assert decide(0.2, 0.5, 5)[0] == "hard"            # m == 0.2 is not > 0.2
    assert decide(0.2000001, 0.5, 5)[0] == "good"
    assert decide(0.01, 0.1, 2)[0] == "hard"           # m == 0.01 is inside (>=)
    assert decide(0.0099, 0.1, 2)[0] == "bad"
    assert decide(0.1, 0.1, 1)[0] == "bad"             # "more than 1" icy chunk
    assert decide(0.1, 0.5, 2)[0] == "hard"            # f == 0.5 belongs to the minority branch
    assert decide(0.1, 0.5000001, 2)[0] == "bad"       # f > 0.5 and m < 0.4


def test_icy_threshold_is_inclusive_and_chunk_band():
    assert classify_image([0.6]).n_icy == 1
    assert classify_image([0.5999]).n_icy == 0
    assert chunk_label(0.4) == "hard"
    assert chunk_label(0.6) == "hard"
    assert chunk_label(0.3999) == "no_ice"
    assert chunk_label(0.6001) == "ice"
    assert classify_image([0.4, 0.5, 0.6, 0.7, 0.1]).n_hard_chunks == 3


def test_empty_image_and_invalid_probabilities():
    call = classify_image([])
    assert call.decision == "bad" and call.n_chunks == 0
    with pytest.raises(ValueError):
        classify_image([0.5, 1.5])
    with pytest.raises(ValueError):
        classify_image([float("nan")])


def test_thresholds_come_from_the_config():
    rules = Rules.from_config({"icy_p": 0.5, "good_mean_minority": 0.1})
    assert classify_image([0.55, 0.0, 0.0], rules).decision == "good"  # m = 0.183 > 0.1
    assert classify_image([0.55, 0.0, 0.0]).decision == "bad"          # paper thresholds
    with pytest.raises(ValueError, match="unknown rules"):
        Rules.from_config({"icy": 0.5})
    with pytest.raises(ValueError, match="must be in"):
        Rules.from_config({"icy_p": 1.5})
    with pytest.raises(ValueError, match="good_min_icy_chunks"):
        Rules.from_config({"good_min_icy_chunks": -1})


def test_paper_profile_rules_match_defaults():
    from ice_patch_cnn.config import load_config

    assert Rules.from_config(load_config("paper")["rules"]) == Rules()
