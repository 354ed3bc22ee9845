"""Nested selection cannot leak: the part a figure is reported on never moves the choice.

Proved by poisoning that part's labels (SKAB files of the held-out folder, TEP fault onsets of
the held-out half) and checking the chosen settings do not change, while the reported figure
does (so the poison did reach the report). Classical monitors only: no TensorFlow, seconds."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evaluation.nested import Alarm, Candidate, Criterion, choose
from procedge.cli import main
from tests.helpers import write_tep_published_split

KEYS = ("model", "scale", "ewma", "level", "margin", "choose_f1", "choose_far")


def test_choose_prefers_the_metric_within_the_far_cap_and_falls_back_without_one():
    c = [Candidate("a", Alarm()), Candidate("b", Alarm(0.5)), Candidate("c", Alarm(0.1))]
    table = {"a": {"f1": 0.9, "far": 20.0}, "b": {"f1": 0.7, "far": 5.0},
             "c": {"f1": 0.6, "far": 1.0}}
    assert choose(c, lambda x: table[x.monitor], Criterion("f1", 13.0))[0].monitor == "b"
    assert choose(c, lambda x: table[x.monitor], Criterion("f1", 0.5))[0].monitor == "a"
    with pytest.raises(ValueError, match="no candidates"):
        choose([], lambda x: {}, Criterion("f1", 1.0))


def _file(path: Path, seed: int, shift: float, poison: bool = False) -> None:
    rng = np.random.default_rng(seed)
    n = 700
    values = rng.normal(size=(n, 1)) @ np.ones((1, 4)) + 0.1 * rng.normal(size=(n, 4))
    values[500:600, 2] += shift
    anomaly = np.zeros(n)
    anomaly[500:600] = 1
    if poison:  # labels of the reported part turned upside down
        anomaly = 1 - anomaly
    cp = np.zeros(n)
    cp[np.flatnonzero(np.diff(anomaly)) + 1] = 1
    df = pd.DataFrame(values, columns=["a", "b", "c", "d"])
    df.insert(0, "datetime", pd.date_range("2020-03-09", periods=n, freq="s"))
    df["anomaly"], df["changepoint"] = anomaly, cp
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, sep=";", index=False)


def _nested_skab(root: Path, out: Path) -> list[dict]:
    main(["eval", "skab", "--root", str(root), "--protocol", "nested", "--nested-aes", "",
          "--edge-mode", "none", "--json", str(out)])
    return json.loads(out.read_text())["results"]


def _pick(rows: list[dict], choose_on: str) -> dict:
    return next(r for r in rows if r["pick"] == "overall" and r["choose_on"] == choose_on)


def test_skab_choice_on_one_folder_ignores_the_other_folders_labels(tmp_path, capsys):
    for i in range(3):
        _file(tmp_path / "skab" / "groupA" / f"{i}.csv", i, shift=3.0)
    for i in range(2):
        _file(tmp_path / "skab" / "groupB" / f"{i}.csv", 10 + i, shift=1.5)
    clean = _nested_skab(tmp_path / "skab", tmp_path / "clean.json")
    out = capsys.readouterr().out
    assert "SKAB nested (leave one group out): 5 files" in out
    assert "| groupB/0 |" in out  # the per-file table of the held-out folder
    for i in range(2):
        _file(tmp_path / "skab" / "groupB" / f"{i}.csv", 10 + i, shift=1.5, poison=True)
    poisoned = _nested_skab(tmp_path / "skab", tmp_path / "poisoned.json")
    a_clean, a_poisoned = _pick(clean, "groupA"), _pick(poisoned, "groupA")
    assert a_clean["test_on"] == "groupB"
    assert {k: a_clean[k] for k in KEYS} == {k: a_poisoned[k] for k in KEYS}
    assert a_poisoned["f1"] < a_clean["f1"] - 0.3  # the poison reached the report only
    assert set(a_clean["per_file"]) == {"groupB/0", "groupB/1"}
    # choosing on the poisoned folder does see it: the check above is not vacuous
    assert _pick(clean, "groupB")["choose_f1"] != _pick(poisoned, "groupB")["choose_f1"]


def test_tep_choice_on_one_half_ignores_the_other_halfs_onsets(tmp_path):
    from edge_runtime.scaling import StandardScaler
    from evaluation import tep_nested
    from evaluation.monitors import MonitorGrid, MonitorSet
    from evaluation.tep import load_tep

    rng = np.random.default_rng(0)
    mix = rng.normal(size=(5, 52))
    normal = lambda n: rng.normal(size=(n, 5)) @ mix + 0.1 * rng.normal(size=(n, 52))  # noqa: E731
    np.savetxt(tmp_path / "d00.dat", normal(500).T)
    for k in (1, 2, 3, 4):
        rows = normal(480)
        rows[:, 7] += 0.5 * k
        np.savetxt(tmp_path / f"d{k:02d}.dat", rows)
    data = load_tep(tmp_path, 3)
    grid = MonitorGrid(pca=tep_nested.PCA_MONITORS)
    fit = StandardScaler.fit(data.fit).transform(data.fit)
    scored = tep_nested.score_blocks(data, MonitorSet.fit(fit, grid), "keras", grid.names())
    cands = [Candidate(m, a, "fit") for m in grid.names() for a in tep_nested.ALARMS]
    cache: dict = {}
    flagged = {c: tep_nested.flag(data, scored, c, cache) for c in cands}
    for c in cands[::7]:  # the shared filter cache changes no flag
        plain = tep_nested.flag(data, scored, c)
        assert plain.far == flagged[c].far
        for fold, cached in zip(plain.faults, flagged[c].faults, strict=True):
            assert all(np.array_equal(fold[k], cached[k]) for k in fold)
    poisoned = replace(data, onset={**data.onset, 2: 0, 4: 0})  # held-out half's labels

    def pick(d):
        return choose(cands, lambda c: tep_nested.metrics(d, flagged[c], (1, 3)),
                      tep_nested.CRITERION)

    assert pick(data) == pick(poisoned)
    chosen = pick(data)[0]
    assert (tep_nested.metrics(data, flagged[chosen], (2, 4))["detection_rate"]
            != tep_nested.metrics(poisoned, flagged[chosen], (2, 4))["detection_rate"])


def test_eval_tep_nested_reports_held_apart_faults_with_plots(tmp_path, capsys):
    rng = np.random.default_rng(1)
    mix = rng.normal(size=(5, 52))
    normal = lambda n: rng.normal(size=(n, 5)) @ mix + 0.1 * rng.normal(size=(n, 52))  # noqa: E731
    np.savetxt(tmp_path / "d00.dat", normal(500).T)
    for k in (1, 2):
        rows = normal(480)
        rows[:, 7] += 2.0
        np.savetxt(tmp_path / f"d{k:02d}.dat", rows)
    out = tmp_path / "tep.json"
    main(["eval", "tep", "--root", str(tmp_path), "--protocol", "nested", "--nested-aes", "",
          "--edge-mode", "none", "--json", str(out), "--plots", str(tmp_path / "plots"),
          "--seed", "3"])
    assert "settings chosen on one half of the faults" in capsys.readouterr().out
    assert json.loads(out.read_text())["settings"]["seed"] == 3  # --seed reaches the grid
    rows = json.loads(out.read_text())["results"]
    overall = [r for r in rows if r["pick"] == "overall"]
    assert [r["test_on"] for r in overall[:2]] == ["2,4,6,8,10,12,14,16,18,20",
                                                   "1,3,5,7,9,11,13,15,17,19,21"]
    assert set(overall[0]["per_fault"]) == {"02"} and set(overall[1]["per_fault"]) == {"01"}
    assert overall[-1]["per_fault"]["01"] > 90 and overall[-1]["per_fault"]["02"] > 90
    for k in (1, 2):
        png = tmp_path / "plots" / f"nested_tep_fault{k:02d}.png"
        assert png.stat().st_size > 5000


def test_grid_flags_equal_the_gateway_replay():
    """The grid's shortcut (filter once per EWMA, compare) gives the replay's flags, with
    and without delays and deadband."""
    from evaluation.common import flags_from
    from evaluation.nested import alarm_flags

    rng = np.random.default_rng(0)
    streams = [rng.exponential(size=300), rng.exponential(size=300)]
    streams[0][:5] = np.nan
    streams[1][100:150] += 3.0
    for a in (Alarm(1.0, 0.9), Alarm(0.2, 0.95, 1.5), Alarm(0.05, 0.99, 2.0)):
        for delays in ({}, {"on_delay": 3, "off_delay": 2}):
            specs = [a.spec(s[:100]).model_copy(update=delays) for s in streams]
            if delays:
                specs = [sp.model_copy(update={"clear_at": 0.8 * sp.raise_at}) for sp in specs]
            expected = flags_from(specs[0], streams[0]) | flags_from(specs[1], streams[1])
            cache: dict = {}
            np.testing.assert_array_equal(alarm_flags(specs, streams, cache), expected)
            np.testing.assert_array_equal(alarm_flags(specs, streams, cache), expected)
            assert expected[100:150].mean() > 0.5


def test_eval_tep_nested_uses_the_published_split_when_test_files_exist(tmp_path):
    """With d00_te.dat … present: limits and FAR from d00_te.dat, faults from sample 161."""
    write_tep_published_split(tmp_path, faults=(1, 2), seed=2)
    out = tmp_path / "tep.json"
    main(["eval", "tep", "--root", str(tmp_path), "--protocol", "nested", "--nested-aes", "",
          "--edge-mode", "none", "--json", str(out)])
    data = json.loads(out.read_text())
    assert data["settings"]["protocol"] == "published"
    held = data["results"][-1]
    assert held["per_fault"]["01"] > 95 and held["per_fault"]["02"] > 95
    pick = data["results"][0]
    assert len(pick["far_folds"]) == 1  # one limit/FAR run (d00_te.dat), not two blocks
    assert pick["far"] <= 5 and held["far"] <= 5


def test_skab_commissioning_is_the_gateways_rule_and_refuses_a_flat_tag():
    """Every nested SKAB limit comes from the gateway's commissioning rule (the trainer's
    rule, same numbers), and a file whose commissioning rows hold a flat-lined tag is
    refused by the gateway's check, naming the tag, instead of being fitted."""
    from edge_runtime.commissioning import CalibrationRefused
    from evaluation import skab
    from training import thresholds

    rng = np.random.default_rng(3)
    scores = rng.gamma(2.0, size=400)
    alarm = Alarm(ewma=0.2, level=0.99, margin=1.5)
    trained = thresholds.calibrate(scores, "quantile", 0.99, 1.5, ewma_alpha=0.2)
    assert alarm.spec(scores).raise_at == pytest.approx(trained.raise_at, rel=1e-12)

    rows = rng.normal(size=(400, 3))
    rows[:, 1] = 4.0
    with pytest.raises(CalibrationRefused, match="Pressure"):
        skab.commission(rows, lambda x: None, [alarm], [], tags=["Flow", "Pressure", "Temp"])


@pytest.mark.parametrize("command", ["skab", "tep"])
def test_nested_refuses_development_settings_it_would_ignore(tmp_path, capsys, command):
    """The nested protocol chooses smoothing, window, epochs … itself: given beside it they
    would be silently ignored, so the command stops naming them before reading any data."""
    with pytest.raises(SystemExit):
        main(["eval", command, "--root", str(tmp_path / "none"), "--protocol", "nested",
              "--ewma", "0.1", "--window", "20"])
    err = capsys.readouterr().err
    assert "--window, --ewma: development-protocol setting(s)" in err
