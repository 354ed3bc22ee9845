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


def test_command_runs_every_arm_with_its_counts(tmp_path, capsys):
    from procedge.cli import main

    root = tep_files(tmp_path, (1, 2))
    out = tmp_path / "aug.json"
    main(["eval", "generative-augment", "--root", str(root), "--faults", "1", "2",
          "--rare", "2", "--window", "4", "--steps", "3", "--latent", "2", "--filters", "4",
          "--seeds", "0", "--epochs", "1", "--width", "4", "--arms", "cut", "cut+syn", "full",
          "cut+dup", "--json", str(out)])
    doc = json.loads(out.read_text())
    rows = {r["variant"]: r for r in doc["results"]}
    assert list(rows) == ["cut", "cut+syn", "full", "cut+dup"]
    assert {r["model"] for r in rows.values()} == {"IDV2"}
    full = rows["full"]["real_rare"]  # 42 training rows of IDV2 → 39 windows of 4
    assert full == 39 and [rows[a]["real_rare"] for a in ("cut", "cut+syn", "cut+dup")] \
        == [4, 4, 4]
    assert [rows[a]["added_rare"] for a in rows] == [0, full, 0, full]
    assert rows["cut+syn"]["generator_s"] > 0
    for r in rows.values():
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["rare_f1"] <= 1
    assert [s["variant"] for s in doc["settings"]["summary"]] == list(rows)
    assert "TEP augmentation study" in capsys.readouterr().out
