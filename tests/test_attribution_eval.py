"""``procedge eval attribution``: the agreement of the two tag rankings and the documented-
variable hit rates, on constructed model outputs whose rankings are known (no training)."""

from __future__ import annotations

import numpy as np

from edge_runtime.bundle import ThresholdSpec
from evaluation.attribution import (
    DOCUMENTED,
    TEP_TAGS,
    agreement,
    alarmed_orders,
    hit_rates,
    most_named,
    parse,
)

WINDOW, TAGS = 4, ["a", "b", "c"]
# Squared error per (step, tag) of a "faulted" window: by error a (3) > b (2) > c (1); the
# attention [0, .1, .2, .7] falls where c is wrong, so by attention c (.7) > b (.4) > a (0).
ERR = np.zeros((WINDOW, 3))
ERR[0, 0], ERR[2, 1], ERR[3, 2] = 3.0, 2.0, 1.0
LOOKED = np.array([0.0, 0.1, 0.2, 0.7])


def stub(onset: int, attention: np.ndarray):
    """A model that reconstructs windows ending before ``onset`` exactly and misses the later
    ones by ``ERR``, attending with ``attention``."""

    def predict(windows: np.ndarray) -> list[np.ndarray]:
        ends = np.arange(len(windows)) + WINDOW - 1
        recon = windows + np.sqrt(ERR)[None] * (ends >= onset)[:, None, None]
        return [recon.astype(np.float32), np.repeat(attention[None], len(windows), 0)]

    return predict


def test_agreement_and_hits_are_known_for_constructed_rankings():
    rows, spec = np.zeros((14, 3)), ThresholdSpec(raise_at=0.1, clear_at=0.05)
    faulty = np.arange(14) >= 8  # windows ending at 8 are faulty but not wrong: not alarmed
    reversed_ = alarmed_orders(stub(9, LOOKED), rows, WINDOW, spec, faulty, TAGS)
    assert reversed_.by_error.tolist() == [[0, 1, 2]] * 5
    assert reversed_.by_attention.tolist() == [[2, 1, 0]] * 5
    got = agreement(reversed_, k=2)
    assert got == {"windows": 5, "top1_agree": 0.0, "top2_overlap": 0.5, "spearman": -1.0,
                   "kendall": -1.0, "attention_peak": 0.7 * WINDOW}
    assert hit_rates(reversed_, [2], k=1) == {
        "top1_documented_error": 0.0, "top1_documented_attention": 1.0}
    assert most_named(reversed_, TAGS) == {"first_by_error": {"a": 1.0},
                                           "first_by_attention": {"c": 1.0}}

    uniform = alarmed_orders(stub(9, np.full(WINDOW, 0.25)), rows, WINDOW, spec, faulty, TAGS)
    assert agreement(uniform) == {"windows": 5, "top1_agree": 1.0, "top3_overlap": 1.0,
                                  "spearman": 1.0, "kendall": 1.0, "attention_peak": 1.0}
    none = alarmed_orders(stub(99, LOOKED), rows, WINDOW, spec, faulty, TAGS)
    assert agreement(none) == {"windows": 0} and hit_rates(none, [0]) == {}


def test_documented_tep_variables_and_per_dataset_defaults():
    assert len(TEP_TAGS) == 52 and TEP_TAGS[8] == "XMEAS(9)" and TEP_TAGS[50] == "XMV(10)"
    assert {1, 4, 6} <= set(DOCUMENTED)
    assert all(t in TEP_TAGS for tags in DOCUMENTED.values() for t in tags)
    assert parse(["--dataset", "skab", "--root", "x"]).window == 30
    tep = parse(["--dataset", "tep", "--root", "x", "--level", "0.99"])
    assert (tep.window, tep.level, tep.edge_mode) == (10, 0.99, "int8")
