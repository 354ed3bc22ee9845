"""The bundle's ``control`` section: a consistent one loads; missing or inconsistent shield
settings (and an input that does not match the observation) are refused naming the field."""

from __future__ import annotations

import json

import pytest

from edge_runtime.bundle import Bundle, BundleError, ControlSpec, _manifest_digest
from tests.bundle_support import sealed_bundle


def control_section(**over) -> dict:
    base = {
        "observation": [{"name": "T", "unit": "K", "center": 348.0, "scale": 50.0},
                        {"name": "batch_time", "unit": "h", "center": 0.5, "scale": 0.5}],
        "action": {"name": "T_sp", "unit": "K", "low": 298.0, "high": 398.0, "max_rate": 10.0},
        "shield": {"low": 300.0, "high": 395.0, "guard": {"tag": "T", "trip": 390.0,
                                                          "reset": 380.0}},
        "pid": {"kp": 2.0, "ti_s": 600.0, "setpoint": 360.0},
        "period_s": 60.0,
    }
    for key, value in over.items():
        base[key] = base[key] | value if isinstance(value, dict) else value
    return base


def control_bundle(directory, control: dict):
    spec = ControlSpec.model_validate(control)
    return sealed_bundle(directory, task="control", family="ppo", control=spec,
                         input=spec.input_spec(), scaler=spec.scaler_spec())


def edit_manifest(root, edit) -> None:
    """Change the manifest as a hand or a tool would, resealing its own hash."""
    path = root / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    data["manifest_sha256"] = _manifest_digest(data)
    path.write_text(json.dumps(data))


def test_a_consistent_control_bundle_loads(tmp_path):
    root = control_bundle(tmp_path / "b", control_section())
    m = Bundle.load(root).manifest
    assert m.control.shield.guard.trip == 390.0 and m.input.window == 1
    assert m.scaler.mean == [348.0, 0.5] and m.control.max_rate == 10.0
    assert m.control.action.to_setpoint(0.0) == 348.0
    assert m.control.action.to_action(398.0) == 1.0


@pytest.mark.parametrize("edit, field", [
    (lambda c: c.pop("shield"), "control.shield"),
    (lambda c: c["shield"].pop("guard"), "control.shield.guard"),
    (lambda c: c["shield"].update(low=396.0), "shield.low"),
    (lambda c: c["shield"]["guard"].update(reset=391.0), "shield.guard.reset"),
    (lambda c: c["shield"]["guard"].update(tag="pressure"), "shield.guard.tag"),
    (lambda c: c["shield"].update(high=420.0), "action.low/high"),
    (lambda c: c["shield"].update(max_rate=-1.0), "control.shield.max_rate"),
    (lambda c: c["action"].update(low=500.0), "action.low"),
    (lambda c: c["shield"]["watchdog"].update(stale_periods=0)
     if "watchdog" in c["shield"] else c["shield"].update(watchdog={"stale_periods": 0}),
     "control.shield.watchdog.stale_periods"),
])
def test_missing_or_inconsistent_shield_settings_are_refused_naming_the_field(
        tmp_path, edit, field):
    root = control_bundle(tmp_path / "b", control_section())
    edit_manifest(root, lambda data: edit(data["control"]))
    with pytest.raises((BundleError, ValueError), match=field.replace(".", r"\.")):
        Bundle.load(root)


def test_input_must_match_the_observation(tmp_path):
    root = control_bundle(tmp_path / "b", control_section())
    edit_manifest(root, lambda d: d["scaler"].update(mean=[0.0, 0.0]))
    with pytest.raises(ValueError, match="center/scale"):
        Bundle.load(root)
    root = control_bundle(tmp_path / "c", control_section())
    edit_manifest(root, lambda d: d["input"].update(window=4))
    with pytest.raises(ValueError, match="window"):
        Bundle.load(root)
    root = control_bundle(tmp_path / "d", control_section())
    edit_manifest(root, lambda d: d.pop("control"))
    with pytest.raises(ValueError, match="'control' section"):
        Bundle.load(root)


def test_a_control_section_for_another_task_is_refused(tmp_path):
    from edge_runtime.config import ControlEdgeConfig, ModelConfig
    from edge_runtime.reload import load_pipeline

    root = sealed_bundle(tmp_path / "a")  # an anomaly bundle
    with pytest.raises(ValueError, match="'control' section is for control bundles"):
        load_pipeline(ModelConfig(name="a", bundle=root, control=ControlEdgeConfig(
            mode="closed_loop", write_topic="plant/sp")), Bundle.load(root))
    with pytest.raises(ValueError, match="one exact topic"):
        ControlEdgeConfig(mode="closed_loop", write_topic="plant/+/sp")
