"""The contract every forecasting family passes: train tiny on the simulator → convert (auto:
the smallest mode that passes the parity gate) → run in the LiteRT interpreter → the edge
outputs match Keras (tolerances in ``tests/forecast_support.py``). Quantile and instance-
normalised variants: ``test_forecaster_variants.py``."""

from __future__ import annotations

import pytest

from converters.build import OfflineOnlyError, build_auto
from converters.ops import model_ops
from tests.forecast_support import CANDIDATES, assert_edge_matches_keras, tiny_forecast
from training.registry import families

FORECASTERS = sorted(f.name for f in families("forecast"))
TFT_PLOTS = ("variable_importance.png", "attention.png")
TFT_ABSENT = ("decoder_selection.png", "static_selection.png")  # test_tft_covariates.py has them


def test_every_family_is_covered():
    assert {"linear", "dlinear", "lstm", "gru", "bilstm", "seq2seq", "transformer",
            "tcn", "informer", "informer_full"} <= set(FORECASTERS)


@pytest.mark.parametrize("family", FORECASTERS)
def test_train_convert_run_matches_keras(family, tmp_path):
    run_dir = tiny_forecast(family, tmp_path / "runs")
    offline = family == "bilstm"
    if offline:
        with pytest.raises(OfflineOnlyError, match="offline-only"):
            build_auto(run_dir, tmp_path / "bundles")
    bundle, attempts = build_auto(run_dir, tmp_path / "bundles", CANDIDATES,
                                  allow_offline=offline)
    assert_edge_matches_keras(run_dir, bundle, f"{family} ({bundle.manifest.quantization}; "
                                               f"{attempts})")
    # every family converts to builtin-op int8 (it may still miss the +2 % MSE budget)
    assert attempts[0].startswith("int8:") and "conversion of" not in attempts[0], attempts
    # a graph XNNPACK will not prepare (the small int8 informer) runs on the builtin kernels
    assert not any("XNNPACK" in a for a in attempts), attempts
    if family == "tft":  # the encoder's selection and attention; no known future, no static
        assert all((run_dir / f).stat().st_size > 0 for f in TFT_PLOTS)
        assert not any((run_dir / f).exists() for f in TFT_ABSENT)
    if family == "informer":  # ProbSparse's top-u queries: a real TOPK_V2 in the shipped graph
        assert "TOPK_V2" in model_ops(bundle.model_path), model_ops(bundle.model_path)
    print(f"{family}: shipped {bundle.manifest.quantization}; {attempts}")
