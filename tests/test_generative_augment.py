"""`procedge eval generative-augment` plumbing on tiny TEP-shaped files: the rare class cut
to its fraction (the same windows for every seed), the arms' real and synthetic counts, the
scores, and the JSON document."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from evaluation.generative_augment import cut, scores


def tep_files(root: Path, faults: tuple[int, ...], rows: int = 60, tags: int = 3) -> Path:
    """``d00.dat`` and ``dXX.dat`` (rows × tags), each class with its own mean."""
    rng = np.random.default_rng(0)
    np.savetxt(root / "d00.dat", rng.normal(0, 1, (rows, tags)))
    for k in faults:
        np.savetxt(root / f"d{k:02d}.dat", rng.normal(k, 1, (rows, tags)))
    return root


def test_cut_keeps_other_classes_and_a_fixed_share_of_the_rare_one():
    classes = np.repeat([0, 1, 2], [50, 40, 30])
    keep = cut(classes, rare=1, fraction=0.1)
    assert np.sum(classes[keep] == 1) == 4 and np.sum(classes[keep] != 1) == 80
    np.testing.assert_array_equal(keep, cut(classes, rare=1, fraction=0.1))
    assert set(keep[classes[keep] == 1]) <= set(cut(classes, 1, 0.25))  # nested
    assert np.sum(classes[cut(classes, 2, 0.01)] == 2) == 1  # never none
    first = cut(classes, rare=1, fraction=0.1, how="first")
    assert first[classes[first] == 1].tolist() == [50, 51, 52, 53]  # the earliest in time


def test_scores_of_known_predictions():
    truth = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 0, 2, 2])
    s = scores(truth, pred, rare=1, n_classes=3)
    assert s["accuracy"] == 4 / 6 and s["rare_recall"] == 0.5 and s["rare_precision"] == 0.5
    assert s["rare_f1"] == 0.5 and np.isclose(s["macro_f1"], (0.5 + 0.5 + 1) / 3)


def test_arms_hold_the_cut_set_synthetic_windows_and_copies():
    from types import SimpleNamespace

    from evaluation.generative_augment import arms

    rng = np.random.default_rng(0)
    c = np.repeat([0, 1, 2], [30, 40, 30])
    x = (rng.normal(size=(100, 4, 3)) + c[:, None, None]).astype(np.float32)
    keep = cut(c, rare=1, fraction=0.1)
    args = SimpleNamespace(arms=["cut", "cut+syn", "full", "cut+dup"], latent=2, filters=4,
                           steps=3)
    data, gen_s = arms(x, c, keep, 1, ["normal", "IDV1", "IDV2"], args)
    assert gen_s > 0 and set(data) == {"cut", "cut+syn", "full", "cut+dup"}
    counts = {a: np.bincount(ac, minlength=3).tolist() for a, (_, ac) in data.items()}
    assert counts == {"cut": [30, 4, 30], "full": [30, 40, 30], "cut+syn": [30, 44, 30],
                      "cut+dup": [30, 44, 30]}
    kept = x[keep][c[keep] == 1]
    copies, synthetic = data["cut+dup"][0][len(keep):], data["cut+syn"][0][len(keep):]
    np.testing.assert_array_equal(copies, np.resize(kept, (40, 4, 3)))  # cycled copies
    np.testing.assert_array_equal(data["cut+syn"][0][:len(keep)], x[keep])
    assert np.isfinite(synthetic).all() and not any(np.allclose(w, kept[0]) for w in synthetic)


def test_command_writes_rows_summary_and_table(tmp_path, capsys):
    from procedge.cli import main

    root = tep_files(tmp_path, (1, 2))
    out = tmp_path / "aug.json"
    main(["eval", "generative-augment", "--root", str(root), "--faults", "1", "2",
          "--rare", "2", "--window", "4", "--seeds", "0", "--epochs", "1", "--width", "4",
          "--arms", "cut", "full", "--json", str(out)])
    doc = json.loads(out.read_text())
    rows = doc["results"]
    assert [(r["model"], r["variant"], r["seed"]) for r in rows] == [("IDV2", "cut", 0),
                                                                     ("IDV2", "full", 0)]
    full = rows[1]["real_rare"]  # 42 training rows of IDV2 → 39 windows of 4
    assert full == 39 and rows[0]["real_rare"] == 4 and rows[0]["added_rare"] == 0
    for r in rows:
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["rare_f1"] <= 1 and r["generator_s"] == 0
    summary = doc["settings"]["summary"]
    assert [(s["variant"], s["seeds"]) for s in summary] == [("cut", 1), ("full", 1)]
    assert summary[0]["rare_f1_min"] == summary[0]["rare_f1"] == rows[0]["rare_f1"]
    assert "| IDV2 | cut | float32 | 1 |" in capsys.readouterr().out
