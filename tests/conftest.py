"""Shared fixtures: a real Mosquitto on a free loopback port, and tiny trained bundles."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from procedge.broker import INSTALL_HINT, mosquitto, mosquitto_binary  # noqa: E402


@pytest.fixture
def broker(tmp_path: Path):
    """A fresh Mosquitto per test (127.0.0.1 only), stopped afterwards."""
    if mosquitto_binary() is None:
        pytest.fail(INSTALL_HINT)
    with mosquitto(workdir=tmp_path) as running:
        yield running


@pytest.fixture(scope="session")
def tank_bundles(tmp_path_factory) -> dict[str, Path]:
    """The demo's two models, trained small on the simulator and converted (auto mode)."""
    from tests.helpers import train_tiny_tank_models

    return train_tiny_tank_models(tmp_path_factory.mktemp("tank"))


@pytest.fixture(scope="session")
def bundles(request) -> dict[str, Path]:
    """``tank_bundles``, or prebuilt ones named by $PROCEDGE_TEST_BUNDLES (local iteration)."""
    from tests.daemon_support import prebuilt_bundles

    return prebuilt_bundles() or request.getfixturevalue("tank_bundles")


# The longest files first: `make test` hands whole files to two xdist workers in collection
# order, so a long file collected last would run alone at the end (longest-first balances).
LONG_FILES = ("test_forecaster_contract.py", "test_images_pipeline.py",
              "test_forecaster_variants.py", "test_soft_sensor_contract.py",
              "test_daemon_faults.py", "test_images_transfer.py", "test_anomaly_contract.py",
              "test_tft_covariates.py", "test_images_cli.py", "test_cli_errors.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: k for k, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FILES)))  # stable

