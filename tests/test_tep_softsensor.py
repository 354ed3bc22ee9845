"""``procedge eval tep-softsensor``: labels only at analyzer updates, the dead-time alignment,
the split by run, and the command on a synthetic TEP-shaped folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evaluation import tep_softsensor as ts
from evaluation.results import check


def analyzer_run(n: int, phase: int, cadence: int = 5, seed: int = 0,
                 same: tuple[int, int] | None = None) -> np.ndarray:
    """A TEP-shaped run (n × 52): input column 0 is the row index; the process composition
    at row r is a function of the inputs at r; the analyzer publishes the composition of
    row t − 5 at each update row t (phase + k·cadence) and holds it in between."""
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((n, ts.COLUMNS))
    rows[:, 0] = np.arange(n)
    if same:  # the process at row same[0] as at row same[1]: a repeated analyzer value
        rows[same[0], 1:] = rows[same[1], 1:]
    composition = rows[:, [1, 2, 3, 4, 5]] + 0.5 * rows[:, [41, 42, 43, 44, 45]]
    shown = np.repeat(composition[:1] * 0 + 7.0, n, axis=0)  # before the file: a constant
    for t in range(phase, n, cadence):
        shown[t:] = composition[max(t - ts.DEAD_TIME_ROWS, 0)]
    rows[:, list(ts.ANALYZER)] = shown
    return rows


def test_holds_are_never_labels_and_windows_end_at_the_dead_time():
    rows = analyzer_run(60, phase=3, same=(23, 18))  # the update at 28 repeats 23's value
    np.testing.assert_array_equal(rows[28, list(ts.ANALYZER)], rows[27, list(ts.ANALYZER)])
    updates = ts.analyzer_updates(rows[:, list(ts.ANALYZER)])
    np.testing.assert_array_equal(updates, np.arange(3, 60, 5))  # 28 kept: it is on cadence
    labels = ts.run_labels(rows, window=4)
    # update rows t with a 4-row window ending at t - 5 inside the run: t >= 8
    np.testing.assert_array_equal(labels.ends, np.arange(8, 60, 5) - ts.DEAD_TIME_ROWS)
    assert len(labels.ends) == 11  # 11 of 60 rows: the 49 holds and early rows are no labels
    # each label is the value published at its update row, paired with the window ending
    # 5 rows earlier: the row whose process state it describes (input col 0 = row index)
    for end, value in zip(labels.ends, labels.values, strict=True):
        t = end + ts.DEAD_TIME_ROWS
        np.testing.assert_array_equal(value, rows[t, list(ts.ANALYZER)])
        np.testing.assert_allclose(value, rows[end, [1, 2, 3, 4, 5]]
                                   + 0.5 * rows[end, [41, 42, 43, 44, 45]])
    # last value: what was on display at the process time (published at or before it)
    np.testing.assert_array_equal(labels.last, rows[labels.ends][:, list(ts.ANALYZER)])
    assert 22 not in ts.INPUTS and 36 not in ts.INPUTS and len(ts.INPUTS) == 33


def test_an_analyzer_off_any_cadence_is_refused():
    rows = analyzer_run(60, phase=3)
    rows[[11, 17, 26, 44], 36] += 1.0  # changes between updates
    with pytest.raises(ts.TepLabelError, match="off the 5-row cadence"):
        ts.analyzer_updates(rows[:, list(ts.ANALYZER)], "d07")
    slow = analyzer_run(60, phase=3, cadence=10)
    with pytest.raises(ts.TepLabelError, match="slower analyzer"):
        ts.analyzer_updates(slow[:, list(ts.ANALYZER)], "d07")


def test_partition_by_run_is_fixed_and_disjoint():
    parts = ts.partition([f"d{i:02d}" for i in range(22)])
    assert parts["val"] == ["d04", "d09", "d13", "d16"]  # as fixed in bench/HISTORY.md
    assert parts["test"] == ["d07", "d12", "d18", "d19"]
    assert "d00" in parts["train"] and len(parts["train"]) == 14
    assert not set(parts["train"]) & (set(parts["val"]) | set(parts["test"]))


def synthetic_root(root: Path) -> Path:
    root.mkdir()
    np.savetxt(root / "d00.dat", analyzer_run(120, 5, seed=0).T)  # stored transposed
    for k in range(1, 6):
        np.savetxt(root / f"d{k:02d}.dat", analyzer_run(100, 5, seed=k))
    return root


def test_command_writes_finite_rows_and_edge_rows_from_the_converted_model(
        tmp_path, monkeypatch):
    from edge_runtime.interpreter import EdgeModel

    calls = []
    predict = EdgeModel.predict

    def spy(self, x):
        calls.append(len(x))
        return predict(self, x)

    monkeypatch.setattr(EdgeModel, "predict", spy)
    root = synthetic_root(tmp_path / "tep")
    out = tmp_path / "out.json"
    ts.main(["--root", str(root), "--families", "cnn1d", "--epochs", "2", "--window", "6",
             "--edge-mode", "int8", "--json", str(out)])
    doc = json.loads(out.read_text())
    check(doc)
    rows = doc["results"]
    kinds = {(r["model"], r["variant"], r["correction"]) for r in rows}
    assert kinds == {("last_value", "numpy", "none")} | {
        (m, v, c) for m, v in (("pls", "numpy"), ("cnn1d", "keras"), ("cnn1d", "edge"))
        for c in ("none", "bias")}
    assert len(rows) == 7 * 5  # one row per analyzer
    for r in rows:
        assert all(np.isfinite(r[k]) for k in ("rmse", "mae", "r2")), r
        assert (r.get("bias_alpha") in ts.BIAS_ALPHAS) == (r["correction"] == "bias")
        assert (r["model"] == "last_value") != np.isfinite(r.get("val_rmse", np.nan))
    assert set(doc["settings"]["goals"]) == {"none", "bias"}
    split = doc["settings"]["split"]
    assert split["test"]["runs"] == ["d03"] and split["test"]["labels"] == 18
    edge = [r for r in rows if r["variant"] == "edge" and r["correction"] == "none"]
    keras = [r for r in rows if r["variant"] == "keras" and r["correction"] == "none"]
    assert {r["mode"] for r in edge} == {"int8"}
    assert doc["settings"]["edge"]["cnn1d"]["ops"]  # read from the converted file
    assert calls[-1] == split["test"]["labels"]  # the test windows ran in LiteRT
    assert [r["rmse"] for r in edge] != [r["rmse"] for r in keras]  # int8 numbers, not Keras


def test_bias_update_uses_only_the_runs_earlier_lab_values():
    truth = np.arange(12.0).reshape(6, 2) ** 2
    raw = truth - np.array([1.0, -3.0])  # a model off by a constant
    group = np.array([0, 0, 0, 1, 1, 1])
    full = ts.bias_updated(raw, truth, group, [1.0, 1.0])
    # first label of each run: no lab value yet, the raw estimate; then the offset is known
    np.testing.assert_array_equal(full[[0, 3]], raw[[0, 3]])
    np.testing.assert_allclose(full[[1, 2, 4, 5]], truth[[1, 2, 4, 5]])
    half = ts.bias_updated(raw, truth, group, [0.5, 0.5])
    np.testing.assert_allclose(half[1] - raw[1], [0.5, -1.5])  # half the first residual
    np.testing.assert_allclose(half[2] - raw[2], [0.75, -2.25])
    # a later lab value never reaches an earlier estimate
    moved = truth.copy()
    moved[2] += 100.0
    np.testing.assert_array_equal(ts.bias_updated(raw, moved, group, [1.0, 1.0])[:3], full[:3])


def test_bias_alpha_is_chosen_on_the_validation_runs():
    rng = np.random.default_rng(0)
    n = 40
    group = np.repeat([0, 1], n // 2)
    truth_val = rng.standard_normal((n, 5))
    steady = truth_val - 2.0  # a constant offset: trust the last lab value (α = 1)
    noisy = truth_val + 0.3 * rng.standard_normal((n, 5))  # unbiased noise: α small
    assert ts.chosen_alphas(steady, truth_val, group)[0] == [1.0] * 5
    alphas, errors = ts.chosen_alphas(noisy, truth_val, group)
    assert all(a <= 0.1 for a in alphas)  # averaging out the noise
    assert errors == [ts._rmse(truth_val[:, j], ts.bias_updated(noisy, truth_val, group,
                                                                alphas)[:, j])
                      for j in range(5)]  # the chosen α's own validation RMSE


def test_history_scores_different_windows_on_the_same_labels():
    runs = {"d00": analyzer_run(120, 5, seed=0)}
    runs |= {f"d{k:02d}": analyzer_run(100, 5, seed=k) for k in range(1, 6)}
    short, long_ = ts.prepare(runs, window=4), ts.prepare(runs, window=12)
    # by default a longer window drops labels
    assert len(short.truth["test"]) > len(long_.truth["test"])
    same = [ts.prepare(runs, window=w, history=12) for w in (4, 12)]
    for part in ("val", "test"):
        np.testing.assert_array_equal(same[0].truth[part], same[1].truth[part])
        np.testing.assert_array_equal(same[0].truth[part], long_.truth[part])
    assert [p.x["test"].shape[1] for p in same] == [4, 12]  # each model sees its own window
    with pytest.raises(ValueError, match="--history 4 must be at least --window 6"):
        ts.main(["--root", "unused", "--window", "6", "--history", "4"])
