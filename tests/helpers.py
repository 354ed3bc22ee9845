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
