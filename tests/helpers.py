"""Small builders shared by tests (real training, real conversion — only smaller)."""

from __future__ import annotations

from pathlib import Path

from converters.build import build_auto
from training.config import load_train_config
from training.train import train

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def tiny_config(name: str, out: Path, **overrides):
    config = load_train_config(CONFIGS / f"{name}.yaml")
    config.output_dir = out / "runs"
    config.data.simulator.steps = 3000
    config.fit.epochs = 15
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def train_tiny_tank_models(out: Path) -> dict[str, Path]:
    bundles = {}
    for name in ("tank_anomaly", "tank_forecast"):
        run_dir = train(tiny_config(name, out))
        # Few candidates keep the shared fixture fast; the converter tests cover all modes.
        # The autoencoder is full int8, as on a gateway; the forecaster int8 or fp16.
        modes = ("int8",) if name == "tank_anomaly" else ("int8", "fp16")
        bundle, _ = build_auto(run_dir, out / "bundles", candidates=modes)
        bundles[name] = bundle.root
    return bundles


def tiny_soft_sensor(family: str, out: Path, **overrides):
    """A soft sensor trained tiny on the simulator's conversion (lab value every 30 s, dead
    time 20 s, window 8 x 5 s); returns the run directory."""
    from training.config import TrainConfig
    from training.registry import get_family

    config = {
        "name": f"soft_{family}", "task": "soft_sensor", "family": family,
        "model": get_family(family, "soft_sensor").small,
        "data": {"source": "simulator", "simulator": {"steps": 1500, "seed": 0}},
        "window": {"period_s": 5, "length": 8, "max_gap_s": 15},
        "soft_sensor": {"target": "conversion", "dead_time_s": 20, "lab_every_s": 30},
        "fit": {"epochs": 4, "batch_size": 32, "patience": 2, "learning_rate": 0.01,
                "clip_norm": 1.0},
        "output_dir": str(out),
    }
    for key, value in overrides.items():
        config[key] = config.get(key, {}) | value if isinstance(value, dict) else value
    return train(TrainConfig.model_validate(config))


def lab_export(path: Path, batches: int, lab_rows: slice | None = None,
               silent: dict[str, slice] | None = None) -> Path:
    """A historian export of the simulated tank with a sparse lab column (every 6th row) and
    a batch id column; ``silent``: tag → rows left empty (a gap)."""
    import numpy as np
    import pandas as pd

    from training.simulator import conversion, simulate, write_csv

    run = simulate(1500, 5.0, seed=1)
    write_csv(run, path)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    lab = np.full(len(frame), "", dtype=object)
    rows = np.arange(len(frame))[lab_rows or slice(None)]
    rows = rows[rows % 6 == 0]
    lab[rows] = [f"{v:.3f}" for v in conversion(run)[rows]]
    frame["conversion"] = lab
    frame["batch"] = (np.arange(len(frame)) * batches // len(frame)).astype(str)
    for tag, gap_rows in (silent or {}).items():
        frame.loc[frame.index[gap_rows], tag] = ""
    frame.to_csv(path, index=False)
    return path


def write_tep_published_split(root: Path, faults: tuple[int, ...], seed: int) -> None:
    """A tiny TEP folder in the published layout: d00.dat (52 x 500, transposed as the data
    set ships it), d00_te.dat and one dXX_te.dat per fault (960 rows each, tag 7 stepped by
    +2 from sample 161)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(5, 52))

    def normal(n: int) -> np.ndarray:
        return rng.normal(size=(n, 5)) @ mix + 0.1 * rng.normal(size=(n, 52))

    np.savetxt(root / "d00.dat", normal(500).T)
    np.savetxt(root / "d00_te.dat", normal(960))
    for k in faults:
        faulty = normal(960)
        faulty[160:, 7] += 2.0
        np.savetxt(root / f"d{k:02d}_te.dat", faulty)
