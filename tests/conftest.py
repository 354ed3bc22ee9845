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
