"""Camera frames (JPEG/PNG) as binary MQTT payloads → QC verdict, NOK-rate alarm and, if asked,
the defect mask; one topic per camera (default ``<uns>/camera/<name>``)."""

from __future__ import annotations

import time

from edge_runtime.config import MqttConfig
from edge_runtime.imaging import ImagePipeline
from edge_runtime.inputs import Inbound, InputSource, subscribe
from edge_runtime.outbox import PRIO_FORECAST, Message
from edge_runtime.routing import Router, json_message


class CameraSource(InputSource):
    def __init__(self, cameras: dict[str, ImagePipeline], router: Router, uns: str,
                 mqtt: MqttConfig):
        self.cameras = cameras  # frame topic → its pipeline
        self.router = router
        self.uns = uns
        self.qos, self.group = mqtt.qos, mqtt.shared_group

    def subscriptions(self) -> list[tuple[str, int]]:
        return subscribe(self.cameras, self.qos, self.group)

    def claims(self, topic: str) -> bool:
        return topic in self.cameras

    def handle(self, item: Inbound, out: list[Message], changed: set[str]) -> None:
        """A frame → verdict (or rejection report), NOK-rate alarm (through its ISA-18.2
        :class:`Alarm`, as anomaly alarms), optional mask PNG, all through the outbox."""
        camera = self.cameras[item.topic]
        router, metrics = self.router, self.router.metrics
        for output in camera.process(item.payload, item.received_s):
            if output.kind == "alarm":
                alarm = router.alarms[output.alarm_id]
                changed.add(alarm.alarm_id)
                out.extend(router.alarm_messages(alarm, alarm.on_condition(
                    output.payload["event"], output.payload, item.received_s, time.time())))
                continue
            if output.payload.get("status") == "rejected":
                metrics.rejected.labels(reason=output.payload["reason"]).inc()
            if output.kind == "debug":
                topic = f"{self.uns}/debug/{camera.name}/mask"
                out.append(Message(topic, output.payload["png"], PRIO_FORECAST, is_json=False))
                continue
            topic = router.topics.get(output.kind, model=camera.name)
            out.append(json_message(topic, output.payload, PRIO_FORECAST))
            metrics.published.labels(kind=output.kind).inc()
        for seconds in camera.inference_s:
            metrics.inference.labels(model=camera.name).observe(seconds)
        camera.inference_s.clear()
