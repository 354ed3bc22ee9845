"""The CLI's errors name the file and the field (with a suggestion when one is obvious), come
before any heavy import, and exit 1 (runtime failure) or 2 (usage or config error)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from procedge.broker import free_port
from procedge.cli import main

ROOT = Path(__file__).resolve().parent.parent

CSV = "timestamp,PT-101,TT-200\n" + "".join(
    f"2026-01-01T00:{m:02d}:00Z,{1 + m * 0.1:.1f},{20 + m * 0.2:.1f}\n" for m in range(30))

TRAIN = {"name": "cli_err", "task": "forecast", "family": "linear",
         "data": {"source": "historian", "path": "export.csv"},
         "window": {"period_s": 60, "length": 4, "max_gap_s": 120}, "horizon": 1,
         "fit": {"epochs": 1}}


def _merge(base: dict, change: dict) -> dict:
    out = dict(base)
    for key, value in change.items():
        out[key] = _merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return out


# (case, change to TRAIN or raw YAML text, fragments the error must hold besides the file)
TRAIN_CASES = [
    ("yaml_syntax", "name: x\ntask: [forecast\n", ["not valid YAML", "line"]),
    ("unknown_key", {"data": {"timestamp_col": "ts"}},
     ["data.timestamp_col", "did you mean 'timestamp_column'"]),
    ("bad_value", {"fit": {"epochs": 0}}, ["fit.epochs", "greater than 0"]),
    ("unknown_family", {"family": "lineer"}, ["family", "'lineer'", "did you mean 'linear'"]),
    ("family_of_other_task", {"family": "dense_ae"}, ["family", "anomaly", "forecast"]),
    ("missing_tag", {"data": {"tags": ["PT101", "TT-200"]}},
     ["data.tags", "'PT101'", "export.csv", "'PT-101'", "did you mean 'PT-101'"]),
    ("unknown_target", {"targets": ["PT101"]},
     ["targets", "'PT101'", "did you mean 'PT-101'"]),
    ("missing_timestamp", {"data": {"timestamp_column": "time"}},
     ["data.timestamp_column", "'time'", "export.csv", "'timestamp'"]),
    ("missing_export", {"data": {"path": "nowhere.csv"}}, ["data.path", "nowhere.csv"]),
    ("soft_target_is_input", {"task": "soft_sensor", "family": "gru",
                              "soft_sensor": {"target": "TT-200"},
                              "data": {"tags": ["PT-101", "TT-200"]}},
     ["soft_sensor.target", "'TT-200' is also an input"]),
    ("soft_unknown_target", {"task": "soft_sensor", "family": "gru",
                             "soft_sensor": {"target": "TT200"}},
     ["soft_sensor.target", "'TT200'", "did you mean 'TT-200'"]),
    ("soft_dead_time", {"task": "soft_sensor", "family": "gru",
                        "soft_sensor": {"target": "TT-200", "dead_time_s": 600}},
     ["soft_sensor.dead_time_s", "longer than the window (4 x 60 s = 240 s)"]),
]


def _write_case(tmp_path: Path, change) -> Path:
    folder = tmp_path / "cfg"
    folder.mkdir(exist_ok=True)
    (folder / "export.csv").write_text(CSV)
    config = folder / "train.yaml"
    text = change if isinstance(change, str) else yaml.safe_dump(
        _merge(TRAIN, change | {"output_dir": str(tmp_path / "runs")}))
    config.write_text(text)
    return config


@pytest.mark.parametrize("case,change,fragments", TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES])
def test_train_config_error_names_file_and_field(tmp_path, monkeypatch, capsys, case, change,
                                                 fragments):
    config = _write_case(tmp_path, change)
    monkeypatch.chdir(tmp_path)  # data.path is relative to the config's folder, not here
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(config)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    assert str(config) in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert "Traceback" not in err
    assert not (tmp_path / "runs" / "cli_err").exists()  # no empty run directory left


def test_train_config_errors_come_before_tensorflow(tmp_path):
    """Every config error above is reported with TensorFlow and Keras blocked."""
    configs = []
    for case, change, _ in TRAIN_CASES:
        case_dir = tmp_path / case
        case_dir.mkdir()
        configs.append(str(_write_case(case_dir, change)))
    probe = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("tensorflow", "keras", "tf_keras"):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        from procedge.cli import main
        codes = []
        for config in {configs!r}:
            try:
                main(["train", config])
            except SystemExit as exc:
                codes.append(exc.code)
        print(codes)
        """)
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str([2] * len(TRAIN_CASES)), out.stderr
    assert "blocked" not in out.stderr


def test_relative_data_path_resolves_against_the_config_folder(tmp_path, monkeypatch):
    from training.config import load_train_config

    config = _write_case(tmp_path, {})
    monkeypatch.chdir(ROOT)
    assert load_train_config(config).data.path == (tmp_path / "cfg" / "export.csv").resolve()


def test_train_json_error_is_one_json_object(tmp_path, capsys):
    config = _write_case(tmp_path, {"family": "lineer"})
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(config), "--json"])
    body = json.loads(capsys.readouterr().out)
    assert exit_.value.code == 2
    assert body["ok"] is False and body["exit_code"] == 2
    assert str(config) in body["error"] and "did you mean 'linear'" in body["error"]


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == "procedge 0.1.0"


def test_verify_missing_bundle_names_the_path(tmp_path, capsys):
    missing = tmp_path / "bundles" / "tank-int8"
    with pytest.raises(SystemExit) as exit_:
        main(["verify", str(missing)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert f"{missing}: no such bundle" in err
    assert "manifest.json" not in err


def test_verify_json(bundles, capsys):
    path = bundles["tank_anomaly"]
    main(["verify", str(path), "--json"])
    body = json.loads(capsys.readouterr().out)
    assert body["ok"] is True and body["name"] == "tank_anomaly"
    assert body["files"] >= 3 and body["quantization"]


def _edge_yaml(tmp_path: Path, **overrides) -> Path:
    config = {"mqtt": {"port": free_port()}, "models": [{"name": "m", "bundle": "b/m-int8"}],
              "outbox": {"path": "outbox.sqlite"}} | overrides
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_run_missing_bundle_names_config_and_field_and_creates_nothing(tmp_path, capsys):
    config = _edge_yaml(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--config", str(config)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    assert str(config) in err and "models[0].bundle" in err
    assert str(tmp_path / "b" / "m-int8") in err and "manifest.json" not in err
    assert not (tmp_path / "outbox.sqlite").exists()


def test_run_rejects_an_unknown_log_level(tmp_path, capsys):
    config = _edge_yaml(tmp_path, log_level="verbose")
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--config", str(config)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert str(config) in err and "log_level" in err and "DEBUG" in err
    assert not (tmp_path / "outbox.sqlite").exists()


def test_edge_unknown_key_suggests_the_field(tmp_path, capsys):
    config = _edge_yaml(tmp_path, log_fromat="json")
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--config", str(config)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert str(config) in err and "log_fromat" in err and "did you mean 'log_format'" in err


def test_replay_to_an_absent_broker_is_a_runtime_failure(tmp_path, capsys):
    csv = tmp_path / "export.csv"
    csv.write_text(CSV)
    port = free_port()
    with pytest.raises(SystemExit) as exit_:
        main(["replay", str(csv), "--port", str(port)])
    err = capsys.readouterr().err
    assert exit_.value.code == 1, err
    assert f"127.0.0.1:{port}" in err and "Traceback" not in err


def test_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["verify"])
    assert exit_.value.code == 2


def test_replay_reaches_a_tls_broker_with_the_edge_configs_credentials(tmp_path, monkeypatch,
                                                                       capsys):
    """`replay --config EDGE.yaml` connects as the gateway does (TLS, user, password); a wrong
    password is a runtime failure naming host:port, not a hang or a traceback."""
    from tests.daemon_support import UNS
    from tests.daemon_support import wait_for as _wait
    from tests.test_daemon_tls import SECRET, running_tls_broker, watcher

    csv = tmp_path / "export.csv"
    csv.write_text(CSV)
    with running_tls_broker() as (port, folder):
        seen: list = []
        watch = watcher(port, folder, seen)
        try:
            config = _edge_yaml(tmp_path, mqtt={
                "host": "127.0.0.1", "port": port, "username": "gw",
                "password_env": "PROCEDGE_TEST_PW", "tls": {"ca_file": str(folder / "ca.pem")}})
            monkeypatch.setenv("PROCEDGE_TEST_PW", "wrong-" + SECRET)
            with pytest.raises(SystemExit) as exit_:
                main(["replay", str(csv), "--config", str(config)])
            err = capsys.readouterr().err
            assert exit_.value.code == 1 and f"127.0.0.1:{port}" in err and "refused" in err
            monkeypatch.setenv("PROCEDGE_TEST_PW", SECRET)
            assert _wait(watch.is_connected, 10)
            time.sleep(0.5)  # its SUBSCRIBE (sent on connect) granted
            main(["replay", str(csv), "--config", str(config), "--uns", UNS])
            assert "replayed 60 samples of 2 tags" in capsys.readouterr().out
            assert _wait(lambda: len(seen) >= 60, 10)
            assert len([t for t, _ in seen if "/raw/PT-101" in t]) == 30
        finally:
            watch.loop_stop()
