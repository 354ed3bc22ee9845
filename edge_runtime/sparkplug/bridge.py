"""What the daemon calls: Sparkplug inputs → samples per tag, outputs → the edge node's outbox.

The daemon stays in charge of ordering and durability: it hands each Sparkplug message to
:meth:`SparkplugBridge.handle` in its worker, and the batch's outputs to
:meth:`SparkplugBridge.enqueue` before it commits its own outbox and acknowledges the inputs.
"""

from __future__ import annotations

import time

from edge_runtime.config import EdgeConfig
from edge_runtime.failover import Failover
from edge_runtime.metrics import DaemonMetrics
from edge_runtime.outbox import PRIO_STATUS, Message
from edge_runtime.sparkplug import codec
from edge_runtime.sparkplug.catalogue import Catalogue, row_payload
from edge_runtime.sparkplug.inputs import Decoded, SparkplugInput
from edge_runtime.sparkplug.node import SparkplugNode
from edge_runtime.sparkplug.pair import SparkplugPair


class SparkplugBridge:
    def __init__(self, config: EdgeConfig, metrics: DaemonMetrics, pipelines: dict, topic_of,
                 failover: Failover | None = None):
        """``failover``: this daemon is one peer of a pair, and its node the pair's one."""
        sp = config.sparkplug
        if sp.input is not None:  # a mapping to a tag no model reads is a config mistake
            used = {tag for p in pipelines.values() for tag in p.tags}
            unknown = sorted({t.tag for t in sp.input.tags} - used)
            if unknown:
                raise ValueError(f"sparkplug.input.tags: {unknown} are inputs of no model "
                                 f"(model tags: {sorted(used)})")
        self.input = SparkplugInput(sp.input) if sp.input is not None else None
        self.topic_of = topic_of
        self.node = None
        self.pair: SparkplugPair | None = None
        if sp.output is not None:
            self.node = SparkplugNode(sp.output, config.gateway, config.mqtt, config.outbox,
                                      Catalogue(pipelines, topic_of), metrics)
            if failover is not None:
                self.pair = SparkplugPair(self.node, failover, metrics)

    def is_alive(self) -> bool:
        return self.node is None or self.node.is_alive()

    def start(self) -> None:
        if self.node is not None:
            self.node.start()

    def stop(self, drain_timeout_s: float = 10.0) -> None:
        if self.node is not None:
            self.node.stop(drain_timeout_s)

    def subscriptions(self) -> list[str]:
        return self.input.subscriptions() if self.input is not None else []

    def handles(self, topic: str) -> bool:
        return self.input is not None and topic.startswith(codec.NAMESPACE + "/")

    def handle(self, topic: str, payload: bytes, received_s: float) -> tuple[Decoded,
                                                                               list[Message]]:
        """Samples per tag and rejects of one message, and a rebirth request to publish."""
        decoded = self.input.handle(topic, payload, received_s)
        out = []
        if decoded.rebirth_topic:
            out.append(Message(decoded.rebirth_topic, codec.rebirth_request(
                round(time.time() * 1000)), PRIO_STATUS, is_json=False, qos=0))  # ncmd-qos
        return decoded, out

    def enqueue(self, messages: list[Message]) -> None:
        """Queue the Sparkplug form of this batch's outputs, committed now and durable
        before the inputs are acked (the daemon's acker syncs this outbox too). In a pair:
        every batch, before the JSON side's routing (a standby holds its rows itself)."""
        if self.node is None or (not messages and self.pair is None):
            return
        rows = [Message(self.node.topic("NDATA"), row_payload(ts, metrics), msg_prio,
                        is_json=False)
                for (ts, metrics), msg_prio in self._rows(messages)]
        if self.pair is not None:
            rows = self.pair.route(rows)
        if rows:
            self.node.outbox.put(rows, sync=False)

    def _rows(self, messages: list[Message]):
        cat = self.node.catalogue
        for msg in messages:
            for row in cat.metrics_of([msg]):
                if row[1]:
                    yield row, msg.priority

    def reload(self, pipelines: dict) -> None:
        """A model was swapped: its metrics may differ, so a new NBIRTH follows."""
        if self.node is not None:
            self.node.set_catalogue(Catalogue(pipelines, self.topic_of))
