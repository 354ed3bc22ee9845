"""Input-source dispatch: each topic goes to the first source that claims it, in the daemon's
order commands → camera → Sparkplug → raw (a folder claims nothing: it feeds the inbox)."""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from types import SimpleNamespace

from edge_runtime.commands import Commands
from edge_runtime.config import CommandConfig, MqttConfig, TopicConfig
from edge_runtime.inputs import Dispatch, Feed
from edge_runtime.inputs.camera import CameraSource
from edge_runtime.inputs.folder import FolderSource
from edge_runtime.inputs.raw import RawSource
from edge_runtime.inputs.sparkplug import SparkplugSource
from edge_runtime.routing import Router, Topics

UNS = "plant/area/line1"
CMD = "edge/gw1/cmd/"


class Bridge:  # the Sparkplug bridge, as far as its input source asks
    def handles(self, topic: str) -> bool:
        return topic.startswith("spBv1.0/")

    def subscriptions(self) -> list[str]:
        return ["spBv1.0/G/+/plc", "spBv1.0/G/+/plc/+"]


def sources(routes: list[str], camera_topics: list[str], group: str = ""):
    mqtt = MqttConfig(shared_group=group)
    topics = Topics(SimpleNamespace(topics=TopicConfig(uns=UNS), gateway="gw1"))
    router = Router(topics, metrics=None, alarms={})
    feed = Feed({t: [] for t in routes}, metrics=None)
    commands = Commands(CommandConfig(), router, lambda out, changed: None, lambda p, s: None)
    camera = CameraSource({t: object() for t in camera_topics}, router, UNS, mqtt)
    sparkplug = SparkplugSource(Bridge(), feed, topics, qos=1)
    raw = RawSource(feed, mqtt)
    folder = FolderSource([], topics, queue.Queue(), threading.Event())
    return commands, camera, sparkplug, raw, folder, feed


def test_each_topic_goes_to_its_source():
    commands, camera, sparkplug, raw, folder, _ = sources(
        [f"{UNS}/raw/temperature"], [f"{UNS}/camera/press2"])
    dispatch = Dispatch([commands, camera, sparkplug, raw, folder])
    assert dispatch.source_of(CMD + "alarm/ack") is commands
    assert dispatch.source_of(CMD + "model/load") is commands
    assert dispatch.source_of(f"{UNS}/camera/press2") is camera
    assert dispatch.source_of("spBv1.0/G/NDATA/plc") is sparkplug
    assert dispatch.source_of(f"{UNS}/raw/temperature") is raw
    assert dispatch.source_of(f"{UNS}/raw/unknown") is None
    assert dispatch.source_of("edge/gw2/cmd/alarm/ack") is None  # another gateway's


def test_a_topic_claimed_twice_goes_to_the_first_in_order():
    shared = [CMD + "x", f"{UNS}/camera/press2", "spBv1.0/G/NDATA/plc", f"{UNS}/raw/level"]
    # raw routes all four; the camera also the command topic
    commands, camera, sparkplug, raw, folder, _ = sources(shared, shared[:2])
    dispatch = Dispatch([commands, camera, sparkplug, raw, folder])
    assert [dispatch.source_of(t) for t in shared] == [commands, camera, sparkplug, raw]


def test_forget_after_a_reload_sees_new_routes():
    commands, camera, sparkplug, raw, folder, feed = sources([f"{UNS}/raw/a"], [])
    dispatch = Dispatch([commands, camera, sparkplug, raw, folder])
    assert dispatch.source_of(f"{UNS}/raw/b") is None
    feed.routes = {f"{UNS}/raw/a": [], f"{UNS}/raw/b": []}
    assert dispatch.source_of(f"{UNS}/raw/b") is None  # remembered until told
    dispatch.forget()
    assert dispatch.source_of(f"{UNS}/raw/b") is raw


def test_subscriptions_shared_except_sparkplug_and_commands():
    commands, camera, sparkplug, raw, folder, _ = sources(
        [f"{UNS}/raw/a"], [f"{UNS}/camera/c"], group="plant1")
    assert raw.subscriptions() == [(f"$share/plant1/{UNS}/raw/a", 1)]
    assert camera.subscriptions() == [(f"$share/plant1/{UNS}/camera/c", 1)]
    assert sparkplug.subscriptions() == [("spBv1.0/G/+/plc", 1), ("spBv1.0/G/+/plc/+", 1)]
    assert commands.subscriptions() == [(CMD + "#", 1)]
    assert folder.subscriptions() == [] and not folder.claims(f"{UNS}/camera/c")


def test_the_daemon_builds_its_sources_in_dispatch_order(tmp_path: Path, bundles):
    from edge_runtime.config import EdgeConfig
    from edge_runtime.daemon import EdgeDaemon
    from tests.daemon_support import UNS as TEST_UNS
    from tests.daemon_support import edge_config

    config = edge_config(tmp_path, 1, bundles)
    config["sparkplug"] = {"input": {"group": "G", "tags": [
        {"tag": "level", "node": "plc", "metric": "LT101/PV"}]}}
    daemon = EdgeDaemon(EdgeConfig.model_validate(config))
    try:
        kinds = [type(s).__name__ for s in daemon.dispatch.sources]
        assert kinds == ["Commands", "CameraSource", "SparkplugSource", "RawSource",
                         "FolderSource"]
        assert type(daemon.dispatch.source_of(f"{TEST_UNS}/raw/level")).__name__ == "RawSource"
        assert type(daemon.dispatch.source_of("spBv1.0/G/NDATA/plc")).__name__ == \
            "SparkplugSource"
    finally:
        daemon.outbox.close()
