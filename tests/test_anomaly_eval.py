"""`procedge eval skab|tep` end to end on files in the published formats (synthetic here, so
no data directory is needed; the PCA reference keeps it fast), plus one real-data check."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evaluation.results import check, write_results
from procedge.cli import main
from tests.helpers import write_tep_published_split


def test_result_schema_refuses_other_shapes(tmp_path):
    """What `eval images` wrote before (its own ``rows`` key, metrics nested, no mode) and a
    row without a mode are refused; the writer refuses them before writing anything."""
    from pydantic import ValidationError

    row = {"model": "m", "variant": "keras", "mode": "float32", "auroc": 0.9}
    assert check({"results": [row], "settings": {}}).results[0].model == "m"
    for bad in ({"rows": [{"model": "m", "variant": "keras-fp32", "metrics": {}}]},
                {"results": [{"model": "m", "variant": "keras"}], "settings": {}},
                {"results": [row], "settings": {}, "size": 128}):
        with pytest.raises(ValidationError):
            check(bad)
    with pytest.raises(ValidationError):
        write_results(tmp_path / "r.json", [{"model": "m"}], {})
    assert not (tmp_path / "r.json").exists()


def _skab_file(path: Path, seed: int, drifting: bool = False, noise: float = 0.1) -> None:
    rng = np.random.default_rng(seed)
    n = 700
    latent = rng.normal(size=(n, 1))
    values = latent @ np.ones((1, 4)) + noise * rng.normal(size=(n, 4))
    anomaly = np.zeros(n)
    anomaly[500:600] = 1
    values[500:600, 2] += 3.0  # one tag breaks away from the others
    cp = np.zeros(n)
    cp[[500, 600]] = 1
    df = pd.DataFrame(values, columns=["a", "b", "c", "d"])
    if drifting:  # a slow state: its level differs between runs and keeps moving in each
        df["temp"] = 20.0 + 10 * seed + np.linspace(0.0, 8.0, n) + 0.1 * rng.normal(size=n)
    df.insert(0, "datetime", pd.date_range("2020-03-09", periods=n, freq="s"))
    df["anomaly"], df["changepoint"] = anomaly, cp
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, sep=";", index=False)


def test_eval_skab_protocol_on_nested_files(tmp_path, capsys):
    _skab_file(tmp_path / "skab" / "valveX" / "0.csv", 0)
    _skab_file(tmp_path / "skab" / "deep" / "er" / "1.csv", 1)
    pd.DataFrame({"datetime": ["2020-01-01 00:00:00"], "a": [1.0]}).to_csv(
        tmp_path / "skab" / "anomaly-free.csv", sep=";", index=False)  # no labels: skipped
    out = tmp_path / "skab.json"
    main(["eval", "skab", "--root", str(tmp_path / "skab"), "--families", "pca_t2_spe",
          "--edge-mode", "none", "--json", str(out), "--vote", "3", "5",
          "--margin", "1", "--ewma", "1"])
    assert "2 files" in capsys.readouterr().out
    written = json.loads(out.read_text())
    check(written)  # the one result format of every benchmark
    (row,) = written["results"]
    assert {"model", "variant", "mode", "f1", "far", "mar", "nab_standard"} <= set(row)
    assert row["f1"] > 0.9 and row["far"] < 10 and row["nab_standard"] > 50


def _pca_skab_with_and_without(tmp_path, option: list[str]) -> tuple[dict, dict]:
    """eval skab on tmp_path/skab with the PCA reference alone (no TensorFlow), no vote, no
    smoothing: the plain run's row, then the whole JSON of the run with ``option``."""
    out = tmp_path / "skab.json"
    args = ["eval", "skab", "--root", str(tmp_path / "skab"), "--families", "pca_t2_spe",
            "--edge-mode", "none", "--json", str(out), "--margin", "1", "--ewma", "1"]
    main(args)
    plain = json.loads(out.read_text())["results"][0]
    main([*args, *option])
    return plain, json.loads(out.read_text())


def test_drift_screen_drops_only_the_tag_whose_level_wanders_between_files(tmp_path, capsys):
    for seed in range(3):
        _skab_file(tmp_path / "skab" / f"{seed}.csv", seed, drifting=True)
    unscreened, data = _pca_skab_with_and_without(tmp_path, ["--drift-screen", "3"])
    assert "dropped (> 3.0): ['temp']" in capsys.readouterr().out
    assert data["settings"]["drift_screen"]["dropped"] == ["temp"]
    assert data["settings"]["drift_screen"]["ratios"]["a"] < 1
    assert data["results"][0]["far"] < unscreened["far"] / 2  # temp alone made false alarms


NOISE_SEEDS, NOISE = 5, 0.3  # 5 runs: the slow tag's levels spread over 40 units


def test_pooled_scale_keeps_the_wandering_tag_but_stops_its_false_alarms(tmp_path, capsys):
    """Pooled scale: the slow tag's in-file drift is measured against its spread over all
    experiments; against the noise of the other tags it no longer stands out."""
    for seed in range(NOISE_SEEDS):
        _skab_file(tmp_path / "skab" / f"{seed}.csv", seed, drifting=True, noise=NOISE)
    per_file, data = _pca_skab_with_and_without(tmp_path, ["--scale", "pooled"])
    assert "pooled scale (training parts only): a " in capsys.readouterr().out
    assert data["settings"]["scale"] == "pooled" and not data["settings"]["drift_screen"]
    pooled = data["results"][0]
    assert pooled["far"] < per_file["far"] / 2 and pooled["f1"] > 0.9


def test_eval_tep_development_protocol(tmp_path):
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(5, 52))
    normal = lambda n: rng.normal(size=(n, 5)) @ mix + 0.1 * rng.normal(size=(n, 52))  # noqa: E731
    np.savetxt(tmp_path / "d00.dat", normal(500).T)  # stored transposed, as published
    for k in (1, 3):
        rows = normal(480)
        if k == 1:
            rows[:, 7] += 2.0
        np.savetxt(tmp_path / f"d{k:02d}.dat", rows)
    out = tmp_path / "tep.json"
    main(["eval", "tep", "--root", str(tmp_path), "--families", "pca_t2_spe",
          "--edge-mode", "none", "--json", str(out), "--rules", "quantile", "coverage"])
    written = json.loads(out.read_text())
    check(written)  # the one result format of every benchmark
    rows = written["results"]
    assert len(rows) == 3 * 2 * 2  # pca_t2, pca_spe, pca_t2_spe × 2 rules × 2 levels
    spe95 = next(r for r in rows if r["model"] == "pca_spe" and r["level"] == 0.95
                 and r["rule"] == "quantile")
    cov95 = next(r for r in rows if r["model"] == "pca_spe" and r["level"] == 0.95
                 and r["rule"] == "coverage")
    assert cov95["far"] <= spe95["far"]  # same scores, limit one rank higher
    assert spe95["per_fault"]["01"] > 95 and spe95["per_fault"]["03"] < 20
    assert spe95["detection_rate_excl_3_9_15"] == pytest.approx(spe95["per_fault"]["01"])
    assert spe95["far"] < 15
    assert len(spe95["far_folds"]) == 2  # limit on one normal block, FAR on the other, swapped
    assert spe95["far"] == pytest.approx(np.mean(spe95["far_folds"]), abs=0.01)


DATA = Path(os.environ.get("PROCEDGE_DATA", Path(__file__).resolve().parents[1].parent
                           / "shared" / "data"))


@pytest.mark.skipif(not (DATA / "tep" / "d00.dat").is_file(), reason="no $PROCEDGE_DATA/tep")
def test_eval_tep_pca_reference_on_real_data(tmp_path):
    out = tmp_path / "tep.json"
    main(["eval", "tep", "--root", str(DATA / "tep"), "--families", "pca_t2_spe",
          "--edge-mode", "none", "--json", str(out)])
    rows = json.loads(out.read_text())["results"]
    spe95 = next(r for r in rows if r["model"] == "pca_spe" and r["level"] == 0.95)
    assert 60 < spe95["detection_rate"] < 80  # published PCA SPE: 68.1 %
    assert len(spe95["per_fault"]) == 21


def test_eval_tep_published_protocol_when_test_files_exist(tmp_path):
    """With dXX_te.dat present: limit and FAR from d00_te.dat, faults from sample 161."""
    write_tep_published_split(tmp_path, faults=(1,), seed=1)
    out = tmp_path / "tep.json"
    main(["eval", "tep", "--root", str(tmp_path), "--families", "pca_t2_spe",
          "--edge-mode", "none", "--json", str(out)])
    data = json.loads(out.read_text())
    assert data["settings"]["protocol"] == "published"
    spe95 = next(r for r in data["results"] if r["model"] == "pca_spe" and r["level"] == 0.95)
    assert spe95["per_fault"]["01"] > 95
    assert 2 < spe95["far"] < 8  # limit and FAR on the same normal test run, as published
    assert spe95["far_lead"] < 15  # samples 1–160 of the fault run are normal
