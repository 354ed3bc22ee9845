"""``transformer_ae``: its attention ships as a second output (builtin int8), and an alarm's
attribution — tags and time steps by reconstruction error and by attention, computed at the
edge in numpy — points at the one faulted tag of a simulated run."""

from __future__ import annotations

import numpy as np

from edge_runtime.attribution import attribution, step_attention
from edge_runtime.scaling import StandardScaler
from edge_runtime.windowing import sliding_windows
from training.simulator import TAGS, Fault, simulate

WINDOW = 8
UNITS = dict(TAGS)
NAMES = [t for t, _ in TAGS]


def test_attribution_ranks_the_wrong_tag_and_the_looked_at_steps():
    x = np.zeros((4, 3))
    recon = x.copy()
    recon[3, 1], recon[0, 2] = 2.0, 1.0  # tag 1 wrong at the last step, tag 2 at the first
    attention = np.array([0.05, 0.05, 0.1, 0.8])
    got = attribution(x, recon, attention, ["a", "b", "c"], {"b": "kPa"}, 1.8e9, 5.0, k=2)
    assert [r["tag"] for r in got["by_error"]] == ["b", "c"] and got["by_error"][0]["unit"] == "kPa"
    assert got["by_error"][0]["share"] == 0.8  # 4 of 5
    assert got["by_attention"][0] == {"tag": "b", "share": round(3.2 / 3.25, 4), "unit": "kPa"}
    assert got["steps_by_attention"][0]["step"] == 0 and got["steps_by_attention"][0][
        "attention"] == 0.8
    assert [s["step"] for s in got["steps_by_error"]] == [0, -3]
    assert "by_attention" not in attribution(x, recon, None, ["a", "b", "c"], {}, 1.8e9, 5.0)
    assert step_attention([np.zeros((2, 4, 3)), np.zeros((2, 1)), attention[None].repeat(2, 0)],
                          (2, 4, 3)).shape == (2, 4)


def test_faulted_tag_ranks_first_from_the_int8_model(tmp_path):
    from converters.tflite import check_builtin_ops, convert
    from edge_runtime.interpreter import EdgeModel
    from evaluation import common
    from training.calibration import save_representative
    from training.transformer_ae import with_attention_output

    normal = simulate(600, 5.0, seed=1).values
    faulty = simulate(300, 5.0, seed=2, faults=[Fault("step", "temperature", 750.0, 12.0)])
    scaler = StandardScaler.fit(normal)
    rows = scaler.transform(normal)
    model = common.fit_family("transformer_ae", rows, common.Settings(
        families=["transformer_ae"], window=WINDOW, epochs=8, batch_size=64))
    shipped = with_attention_output(model)
    assert [tuple(o.shape[1:]) for o in shipped.outputs] == [(WINDOW, 5), (WINDOW,)]
    shipped.save(tmp_path / "model.keras")
    save_representative(tmp_path, sliding_windows(rows, WINDOW)[0], 0)
    convert(tmp_path / "model.keras", tmp_path / "model.tflite", "int8",
            representative=tmp_path / "representative.npz")
    assert not {n for n in check_builtin_ops(tmp_path / "model.tflite") if n.startswith("Flex")}

    x, ends = sliding_windows(scaler.transform(faulty.values), WINDOW)
    x = x[faulty.faulty[ends - WINDOW + 1]]  # windows faulted from their first step
    ys = EdgeModel(tmp_path / "model.tflite").predict(x)
    attention = step_attention(ys, x.shape)
    recon = next(o for o in ys if o.shape == x.shape)
    np.testing.assert_allclose(attention.sum(axis=1), 1.0, atol=0.02)
    firsts = {"by_error": [], "by_attention": []}
    for i in range(len(x)):
        got = attribution(x[i], recon[i], attention[i], NAMES, UNITS, 1.8e9, 5.0)
        for key in firsts:
            firsts[key].append(got[key][0]["tag"])
    for key, tags in firsts.items():  # the faulted tag first, in (nearly) every window
        assert np.mean(np.array(tags) == "temperature") >= 0.9, (key, tags)
    assert got["by_attention"][0]["unit"] == "degC"


def test_an_alarm_raise_carries_the_attribution():
    from types import SimpleNamespace

    from edge_runtime.alarms import AlarmLogic
    from edge_runtime.bundle import ThresholdSpec
    from edge_runtime.smoothing import ScoreFilter
    from edge_runtime.tasks.anomaly import post

    spec = ThresholdSpec(raise_at=0.5, clear_at=0.4)
    manifest = SimpleNamespace(input=SimpleNamespace(period_s=5.0))
    pipeline = SimpleNamespace(
        thresholds=spec, commissioning=None, tags=NAMES, units=UNITS, alarm=AlarmLogic(spec),
        score_filter=ScoreFilter(spec), alarm_id="m.anomaly", base_payload=dict,
        bundle=SimpleNamespace(manifest=manifest))
    x = np.zeros((2, WINDOW, 5), np.float32)
    recon = x.copy()
    recon[1, :, 3] = 3.0  # the second window: pressure wrong at every step
    attention = np.full((2, WINDOW), 1 / WINDOW, np.float32)
    attention[1] = np.linspace(0.0, 0.25, WINDOW)
    attention[1] /= attention[1].sum()
    outputs = post(pipeline, [1.8e9, 1.8e9 + 5], x, [attention, recon])
    [alarm] = [o for o in outputs if o.kind == "alarm"]
    got = alarm.payload["attribution"]
    assert got["by_error"][0] == {"tag": "pressure", "share": 1.0, "unit": "kPa"}
    assert got["by_attention"][0]["tag"] == "pressure"
    assert [s["step"] for s in got["steps_by_attention"]] == [0, -1, -2]
    assert got["steps_by_attention"][0]["ts"] == "2027-01-15T08:00:05.000Z"
