"""Gateway configuration (YAML): one strict pydantic model per section, Frigate-style."""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
from importlib.util import find_spec
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from edge_runtime.contract import Strict
from edge_runtime.ha_config import HaConfig
from edge_runtime.partition import check_partition, check_workers, worker_names
from edge_runtime.validation import ConfigError, read_yaml, validate

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# result topics a pair shares (the active publishes them; docs/edge_daemon.md)
PAIR_OUTPUTS = ("inference", "alarm", "alarm_state", "residual", "advice")


class TlsConfig(Strict):
    ca_file: Path = Field(description="CA certificate(s) that signed the broker's certificate.")
    cert_file: Path | None = Field(default=None, description="Client certificate (mutual TLS).")
    key_file: Path | None = Field(default=None, description="Client private key.")


class MqttConfig(Strict):
    host: str = Field(default="127.0.0.1", description="Broker host.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker port.")
    client_id: str = Field(default="", description="MQTT client id; default procedge-<gateway>.")
    keepalive_s: int = Field(default=30, ge=5, description="MQTT keepalive, seconds.")
    qos: Literal[0, 1] = Field(default=1, description="QoS of subscriptions and publications.")
    protocol: Literal["3.1.1", "5"] = Field(default="3.1.1", description="MQTT version.")
    persistent_session: bool = Field(
        default=True, description="Keep the broker session (and QoS 1 backlog) across restarts.")
    tls: TlsConfig | None = Field(default=None, description="Connect over TLS.")
    require_tls: bool = Field(default=False, description="Refuse to start without `tls`.")
    username: str = Field(default="", description="Broker user name.")
    password_file: Path | None = Field(default=None, description="File holding the password.")
    password_env: str = Field(default="", description="Environment variable with the password.")
    shared_group: str = Field(
        default="", description="Subscribe as $share/<group>/...: each message to one daemon "
        "of the group (camera frames; not series windows, not failover: see `ha`).")
    reconnect_min_s: float = Field(default=0.5, gt=0, description="First reconnect delay.")
    reconnect_max_s: float = Field(default=30.0, gt=0, description="Longest reconnect delay.")

    @model_validator(mode="after")
    def _tls_when_required(self) -> MqttConfig:
        if self.require_tls and self.tls is None:
            raise ValueError("require_tls is set but no `tls` section: refusing plaintext MQTT")
        return self

    def password(self) -> str | None:
        """Read the secret at connect time (never stored in the config, never logged)."""
        return read_secret(self.password_file, self.password_env)

    def configure(self, client) -> None:
        """TLS, credentials and TCP_NODELAY on a paho client, the same for every connection
        procedge makes (the daemon's, the Sparkplug edge node's). paho leaves Nagle's algorithm
        on: a small alarm publish would then wait for the ACK of the previous segment."""
        client.on_socket_open = _no_nagle
        if self.tls is not None:
            import ssl

            client.tls_set(ca_certs=str(self.tls.ca_file),
                           certfile=str(self.tls.cert_file) if self.tls.cert_file else None,
                           keyfile=str(self.tls.key_file) if self.tls.key_file else None,
                           tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if self.username:
            client.username_pw_set(self.username, self.password())


def read_secret(path: Path | None, env: str) -> str | None:
    """A password from a file (stripped) or an environment variable, read when needed so it
    is never held in the config or logged; None when neither is given."""
    if path is not None:
        return path.read_text().strip()
    if env:
        import os

        if env not in os.environ:
            raise ValueError(f"environment variable {env} is not set")
        return os.environ[env]
    return None


def _no_nagle(client, userdata, sock) -> None:
    with contextlib.suppress(AttributeError, OSError):  # e.g. websockets: no TCP socket
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class TopicConfig(Strict):
    """ISA-95 style namespace; ``{uns}``, ``{tag}``, ``{model}``, ``{gateway}`` are filled in."""

    uns: str = Field(default="procedge/site/area/line1", description="Namespace prefix.")
    raw: str = Field(default="{uns}/raw/{tag}", description="Where each sensor tag arrives.")
    inference: str = Field(default="{uns}/inference/{model}", description="Forecasts, scores.")
    alarm: str = Field(default="{uns}/alarm/{model}/{alarm_id}", description="Alarm events.")
    alarm_state: str = Field(default="{uns}/alarm/{model}/{alarm_id}/state",
                             description="Retained ISA-18.2 state of each alarm.")
    status: str = Field(default="edge/{gateway}/status", description="Retained online/offline.")
    models: str = Field(default="edge/{gateway}/status/models",
                        description="Retained active bundle version per model.")
    commissioning: str = Field(default="edge/{gateway}/status/commissioning/{model}",
                               description="Retained commissioning status of each model.")
    cmd: str = Field(default="edge/{gateway}/cmd", description="Command prefix (…/cmd/#).")
    reply: str = Field(default="edge/{gateway}/reply", description="Command replies.")
    lab: str = Field(default="{uns}/lab/{tag}", description="Where lab/analyzer values of "
                     "soft-sensor targets arrive ({tag}: the target; subscribed with + there).")
    residual: str = Field(default="{uns}/inference/{model}/residual",
                          description="Soft sensors: estimate - lab value, per lab value.")
    advice: str = Field(default="{uns}/advice/{model}", description="Control policies: the "
                        "shielded recommended set-point, raw action, verdict, fallback state.")

    @field_validator("lab")
    @classmethod
    def _one_tag_level(cls, value: str) -> str:
        levels = value.split("/")
        if "{tag}" not in levels or value.count("{tag}") != 1:
            raise ValueError(f"{value!r}: {{tag}} must be one whole topic level, once")
        return value

    @field_validator("uns")
    @classmethod
    def _valid_levels(cls, value: str) -> str:
        bad = [c for c in " +#$" if c in value]
        if bad or not all(value.split("/")):
            raise ValueError(f"namespace levels must be non-empty without {bad or ' +#$'}")
        return value


class EstimateLimits(Strict):
    """Limits of a soft sensor's estimate; either may be left out."""

    low: float | None = Field(default=None, description="Below this: limit 'low'.")
    high: float | None = Field(default=None, description="Above this: limit 'high'.")

    @model_validator(mode="after")
    def _ordered(self) -> EstimateLimits:
        if self.low is not None and self.high is not None and self.low >= self.high:
            raise ValueError(f"limits.low {self.low:g} must be below limits.high "
                             f"{self.high:g}")
        return self


class SoftSensorEdgeConfig(Strict):
    """A soft sensor's lab-value correction (docs/soft_sensors.md)."""

    bias_update: bool = Field(
        default=False, description="Correct later estimates by the lab values: bias ← "
        "(1 - bias_alpha)·bias + bias_alpha·(lab value - model estimate); off: residuals "
        "are published, estimates stay the model's.")
    bias_alpha: float = Field(default=0.3, gt=0, le=1, description="Weight of the newest lab "
                              "error in the bias (1: the last lab value alone).")
    contributions: bool = Field(
        default=False, description="Every estimate carries its per-tag occlusion "
        "contributions (one extra run of the model on F windows per estimate); off: only "
        "estimates that cross `limits`.")
    limits: EstimateLimits | None = Field(
        default=None, description="Low/high limits of the estimate (engineering units, after "
        "the bias): an estimate outside them says which and carries its contributions.")
    explain_classes: list[str] = Field(
        default_factory=list, description="Classification soft sensors: an estimate of one "
        "of these classes (e.g. [off-spec]) carries its contributions, as an estimate "
        "outside `limits` does for a number; each must be a class of the bundle.")


class ControlEdgeConfig(Strict):
    """A control policy at the gateway (docs/control_edge.md): advice only, unless
    ``mode: closed_loop`` says explicitly that the shielded set-point is written."""

    mode: Literal["advisory", "closed_loop"] = Field(
        default="advisory", description="advisory: publish advice only, never write; "
        "closed_loop: also write the shielded set-point to `write_topic`.")
    write_topic: str = Field(default="", description="closed_loop: the exact topic the "
                             "set-point is written to as {\"v\": .., \"ts\": ..}.")
    speed: float = Field(default=1.0, gt=0, description="The plant's clock runs this many "
                         "times faster than the wall clock (a simulated plant run with "
                         "`procedge simulate --speed`); 1 for a real plant. The watchdog's "
                         "timer counts control periods on it.")
    timer_slack: float = Field(default=0.5, ge=0, description="The watchdog counts a period "
                               "as missed (1 + timer_slack) periods after the last step.")

    @model_validator(mode="after")
    def _write_topic_when_closed(self) -> ControlEdgeConfig:
        if self.mode == "closed_loop":
            if not self.write_topic:
                raise ValueError("mode closed_loop needs `write_topic` (where the set-point "
                                 "is written)")
            if any(c in self.write_topic for c in "+#"):
                raise ValueError(f"write_topic {self.write_topic!r}: one exact topic (no + #)")
        return self


class ModelConfig(Strict):
    name: str = Field(description="Name used in topics; default the bundle's name.")
    bundle: Path = Field(description="Bundle directory or .zip.")
    threads: int = Field(default=1, ge=1, description="Interpreter threads.")
    public_key: Path | None = Field(
        default=None, description="Ed25519 public key (PEM): refuse unsigned or foreign bundles.")
    allowed_lateness_s: float | None = Field(
        default=None, ge=0, description="Event time this model's samples may arrive behind the "
                                        "newest; default `event_time.allowed_lateness_s`.")
    soft_sensor: SoftSensorEdgeConfig | None = Field(
        default=None, description="Soft-sensor bundles only: the bias update from lab values "
        "(default: off, residuals still published).")
    control: ControlEdgeConfig | None = Field(
        default=None, description="Control bundles only: mode (advisory by default: nothing "
        "is ever written), write topic, clock speed of a simulated plant.")
    process: str | None = Field(
        default=None, description="The worker process (a name from `workers`) that runs this "
        "model; default: dealt round-robin.")


class EventTimeConfig(Strict):
    """How sample timestamps (event time) meet the receive clock (docs/edge_daemon.md,
    "Event time"). Defaults suit live data at real time; a replay faster than real time needs
    a larger lateness (and, if its timestamps run ahead of the clock, ``max_skew_s: null``)."""

    max_skew_s: float | None = Field(
        default=30.0, gt=0, description="A sample further ahead of the receive clock is refused "
                                        "(`future`); null: no check (replays ahead of the clock).")
    allowed_lateness_s: float = Field(
        default=60.0, ge=0, description="Event time a sample may arrive behind the newest and "
                                        "still be placed (rides out a broker restart).")
    reconnect_hold_s: float = Field(
        default=30.0, ge=0, description="After the MQTT session reconnects, steps wait for the "
                                        "watermark this long (receive clock): redelivered and "
                                        "queued inputs arrive out of order then. 0: no hold.")
    eager: bool = Field(
        default=True, description="Emit a grid step as soon as every tag reported past it; "
                                  "false: only when the watermark passes it (sources that "
                                  "reorder within a topic), results later by the lateness.")

    def lateness_of(self, model: ModelConfig) -> float:
        return (self.allowed_lateness_s if model.allowed_lateness_s is None
                else model.allowed_lateness_s)


class OutboxConfig(Strict):
    path: Path = Field(default=Path("procedge-outbox.sqlite"),
                       description="SQLite file (relative to the config file).")
    max_rows: int = Field(default=100_000, gt=0, description="Bound; forecasts evicted first.")
    synchronous: Literal["NORMAL", "FULL"] = Field(
        default="FULL", description="FULL survives power loss; NORMAL only a process crash.")
    late_after_s: float = Field(default=10.0, ge=0,
                                description="Events sent later than this are historical.")
    max_inflight: int = Field(default=1000, gt=0, le=60000,
                              description="Unacknowledged publishes at most (ids are 16 bit).")
    resend_after_s: float = Field(default=60.0, gt=0,
                                  description="Re-send a publish unacknowledged this long.")


class AlarmConfig(Strict):
    max_shelve_s: float = Field(default=8 * 3600, gt=0,
                                description="Longest shelve (a longer one is refused).")
    max_out_of_service_s: float = Field(
        default=8 * 3600, gt=0,
        description="Longest out of service: a command without a duration, or asking for more, "
                    "gets this (said in the reply); then the alarm returns to service by itself.")
    chatter_count: int = Field(default=5, ge=2, description="Raises within the window ...")
    chatter_window_s: float = Field(default=600, gt=0, description="... that mean chattering.")


class DriftConfig(Strict):
    """The drift monitor of every series model whose bundle carries drift statistics
    (docs/edge_daemon.md, "Drift"): advisory alarms, one per model and tag."""

    enabled: bool = Field(default=True, description="Run the drift monitor of bundles that "
                          "carry drift statistics; false: none.")
    window: int | None = Field(
        default=None, ge=2, description="Rows (grid steps) of the rolling PSI window; default "
        "the bundle's (the length its limits were derived for: another length keeps those "
        "limits unless psi_limit/psi_limits are given).")
    check_every: int = Field(default=30, ge=1, description="Compute the PSI every this many "
                             "rows (not per message).")
    on_delay: int = Field(default=2, ge=1, description="Checks in a row over the limit to raise.")
    off_delay: int = Field(default=2, ge=1, description="Checks in a row under the clear level "
                           "to clear.")
    clear_ratio: float = Field(default=0.8, gt=0, le=1, description="Clear level = this x the "
                               "limit (deadband).")
    priority: Literal["low", "medium", "high", "urgent"] = Field(
        default="low", description="ISA-18.2 priority of drift alarms (advisory: low).")
    psi_limit: float | None = Field(default=None, gt=0, description="PSI limit of every tag "
                                    "instead of the bundle's.")
    psi_limits: dict[str, float] = Field(default_factory=dict, description="PSI limit per tag "
                                         "(wins over psi_limit and the bundle's).")
    residual_limit: float | None = Field(default=None, gt=0, description="CUSUM limit of every "
                                         "forecast target instead of the bundle's.")

    @field_validator("psi_limits")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {tag: v for tag, v in value.items() if not v > 0}
        if bad:
            raise ValueError(f"PSI limits must be > 0: {bad}")
        return value


class CommandConfig(Strict):
    allowed: list[str] = Field(
        default_factory=list,
        description="Identities allowed to command; empty = every command refused. Without "
                    "`require_signature` the identity is what the sender writes (`by` field / "
                    "MQTT 5 user property `by`): then the broker ACL on cmd/# is the only gate.")
    require_signature: bool = Field(
        default=False,
        description="Accept only commands signed (Ed25519) by a key in `operator_keys`; the "
                    "identity is then the verified `by` (see docs/edge_daemon.md).")
    operator_keys: dict[str, Path] = Field(
        default_factory=dict,
        description="Operator id → Ed25519 public key (PEM) that signs that operator's commands.")
    max_clock_skew_s: float = Field(
        default=120, gt=0, le=3600,
        description="A signed command's `ts` may be at most this far from the gateway clock.")
    max_nonces: int = Field(
        default=10_000, gt=0,
        description="Nonces remembered (for 2 × max_clock_skew_s) against replays; when full "
                    "of live ones, further commands are refused until some expire.")

    @model_validator(mode="after")
    def _keys_when_signed(self) -> CommandConfig:
        if self.require_signature and not self.operator_keys:
            raise ValueError("require_signature is set but `operator_keys` is empty: "
                             "no command could ever be accepted")
        return self


class ReloadConfig(Strict):
    models_dir: Path | None = Field(default=None, description="Watched for new bundles.")
    poll_s: float = Field(default=2.0, gt=0, description="How often to look.")
    min_interval_s: float = Field(
        default=1.0, ge=0, description="Bundles load one at a time, starting at least this far "
        "apart (from the folder or model/load commands alike).")
    max_pending: int = Field(
        default=4, ge=1, description="Bundles queued behind the one loading; a request for a "
        "path already queued is coalesced with it, one beyond this is refused (busy).")


class CameraConfig(Strict):
    """Image QC for one camera: frames (JPEG/PNG) arrive as binary MQTT payloads."""

    name: str = Field(description="Camera / station name, used in topics.")
    topic: str = Field(default="", description="Frame topic; default {uns}/camera/{name}.")
    classifier: Path | None = Field(default=None, description="Image classifier bundle.")
    segmenter: Path | None = Field(default=None, description="Image segmenter bundle.")
    threads: int = Field(default=1, ge=1, description="Interpreter threads per model.")
    max_bytes: int = Field(default=10_000_000, gt=0, description="Larger payloads: rejected.")
    max_pixels: int = Field(default=25_000_000, gt=0, description="Larger frames: rejected.")
    nok_window: int = Field(default=50, ge=1, description="Parts in the NOK-rate window.")
    nok_rate_limit: float = Field(default=0.2, gt=0, le=1, description="Alarm at this rate.")
    nok_threshold: float = Field(default=0.5, gt=0, lt=1, description="NOK when p(NOK) >=.")
    min_defect_px: int = Field(default=20, ge=1, description="Segmenter-only NOK area, px.")
    debug_mask: bool = Field(default=False, description="Publish the mask PNG on {uns}/debug.")
    watch_dir: Path | None = Field(default=None, description="Also take frames dropped here.")
    watch_interval_s: float = Field(default=0.5, gt=0, description="Folder poll period.")

    @model_validator(mode="after")
    def _a_model(self) -> CameraConfig:
        if self.classifier is None and self.segmenter is None:
            raise ValueError(f"camera {self.name!r}: give a classifier and/or a segmenter")
        return self


# -- the `sparkplug:` section (Sparkplug B in/out, off by default) -------------------------
_FORBIDDEN = set("+#/ ")  # Sparkplug ids are single MQTT topic levels


def _topic_level(value: str) -> str:
    if not value or _FORBIDDEN & set(value) or value.startswith("$"):
        raise ValueError(f"{value!r} must be one non-empty topic level without + # / $ or space")
    return value


class SparkplugTag(Strict):
    """One Sparkplug metric that feeds one model tag."""

    tag: str = Field(description="Model input tag (as in the bundle manifest) that this feeds.")
    node: str = Field(description="Edge node id (`spBv1.0/<group>/NDATA/<node>`).")
    device: str = Field(default="", description="Device id for DBIRTH/DDATA; empty = node metric.")
    metric: str = Field(default="", description="Metric name as announced in the BIRTH.")
    alias: int | None = Field(default=None, ge=0,
                              description="Or: the metric's alias as announced in the BIRTH.")

    _levels = field_validator("node")(_topic_level)

    @model_validator(mode="after")
    def _name_or_alias(self) -> SparkplugTag:
        if bool(self.metric) == (self.alias is not None):
            raise ValueError(f"tag {self.tag!r}: give exactly one of `metric` or `alias`")
        if self.device:
            _topic_level(self.device)
        return self


class SparkplugInputConfig(Strict):
    """Read model inputs from Sparkplug B edge nodes (births tracked, aliases resolved)."""

    group: str = Field(description="Sparkplug group id to subscribe to.")
    tags: list[SparkplugTag] = Field(min_length=1, description="Metric → tag mapping.")
    request_rebirth: bool = Field(
        default=True, description="Send `Node Control/Rebirth` (NCMD) when DATA arrives from a "
                                  "node or device whose BIRTH was not seen.")
    rebirth_interval_s: float = Field(default=30.0, gt=0,
                                      description="At most one rebirth request per node per this.")
    max_payload_bytes: int = Field(default=1 << 20, gt=0, description="Larger payloads: rejected.")

    _group = field_validator("group")(_topic_level)


class SparkplugOutputConfig(Strict):
    """Publish forecasts, scores and alarm states as a Sparkplug B edge node (NBIRTH/NDATA)."""

    group: str = Field(description="Sparkplug group id to publish under.")
    node: str = Field(default="", description="Edge node id; default: the gateway name.")
    client_id: str = Field(default="", description="MQTT client id of the edge node's own "
                                                   "connection; default <mqtt client id>-spb.")
    qos: Literal[0, 1] = Field(
        default=0, description="QoS of NBIRTH/NDATA: 0 as Sparkplug 3.0 requires (a row leaves "
                               "the outbox once a later UNSUBSCRIBE fence is acknowledged); 1 "
                               "is a documented deviation (deleted on each PUBACK).")
    primary_host: str = Field(
        default="", description="Sparkplug host id to wait for: NBIRTH only after "
                                "`spBv1.0/STATE/<id>` says online, session ended when offline.")
    outbox_path: Path | None = Field(
        default=None, description="SQLite outbox of the Sparkplug rows (and bdSeq); default: "
                                  "beside `outbox.path`, suffix `-sparkplug`.")

    _group = field_validator("group")(_topic_level)

    @field_validator("node", "primary_host")
    @classmethod
    def _optional_level(cls, value: str) -> str:
        return _topic_level(value) if value else value


class SparkplugConfig(Strict):
    """Sparkplug B input and/or output; both off by default (JSON on ISA-95 topics)."""

    input: SparkplugInputConfig | None = Field(default=None, description="Sparkplug inputs.")
    output: SparkplugOutputConfig | None = Field(
        default=None, description="Also publish results as a Sparkplug B edge node.")


class MappedTag(Strict):
    """Where one model tag arrives in an existing topic tree, and where in the payload."""

    topic: str = Field(description="Exact MQTT topic, e.g. plant/area/PT101/value.")
    value: str = Field(
        default="", description="JSON pointer (RFC 6901) to the number in a JSON payload, e.g. "
                                "'/value' or '/data/0/v'; '' = the payload is the number.")
    time: str = Field(
        default="", description="JSON pointer to the sample's timestamp (ISO 8601 with a "
                                "zone, or epoch numbers); '' = the receive time.")
    time_unit: Literal["ms", "s"] = Field(default="ms",
                                          description="Unit of epoch-number timestamps.")

    @field_validator("topic")
    @classmethod
    def _exact_topic(cls, value: str) -> str:
        if not value or any(c in value for c in "+#") or value.startswith("$"):
            raise ValueError(f"{value!r}: give one exact topic (no + # or leading $)")
        return value

    @field_validator("value", "time")
    @classmethod
    def _pointer(cls, value: str) -> str:
        if value and not value.startswith("/"):
            raise ValueError(f"{value!r}: a JSON pointer starts with '/' (e.g. '/value')")
        return value


# -- the `opcua:` section (an OPC UA server as input source, off by default) -----------------
# ns=<index>; then i= (numeric), s= (string), g= (GUID) or b= (opaque, base64): OPC UA Part 6's
# string form. Checked here, without asyncua, so a typo is a config error naming the node.
_NODE_ID = re.compile(r"^(ns=\d+;)?(i=\d+|s=.+|g=[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}"
                      r"|b=[A-Za-z0-9+/=]+)$", re.S)


class OpcUaSecurityConfig(Strict):
    """How the OPC UA secure channel is protected. ``Basic256Sha256`` needs this client's
    certificate and key (PEM or DER), and the server's certificate to pin; without it the
    certificate the server offers in its endpoint list is taken (trust on first use)."""

    policy: Literal["None", "Basic256Sha256"] = Field(
        default="None", description="Security policy: None (plain) or Basic256Sha256.")
    mode: Literal["Sign", "SignAndEncrypt"] = Field(
        default="SignAndEncrypt", description="Message security mode with Basic256Sha256.")
    certificate: Path | None = Field(default=None, description="This client's certificate.")
    private_key: Path | None = Field(default=None, description="This client's private key.")
    server_certificate: Path | None = Field(
        default=None, description="The server's certificate (pinned); default: the one the "
                                  "server's endpoint list offers.")

    @model_validator(mode="after")
    def _certs_when_secure(self) -> OpcUaSecurityConfig:
        if self.policy != "None" and (self.certificate is None or self.private_key is None):
            raise ValueError(f"policy {self.policy} needs `certificate` and `private_key`")
        return self


class OpcUaConfig(Strict):
    """Read model tags from an OPC UA server: one subscription, a monitored item per node,
    each data change fed to the models as a sample of its tag (docs/edge_daemon.md, OPC UA)."""

    endpoint: str = Field(description="Server endpoint URL, e.g. opc.tcp://plc1:4840/.")
    nodes: dict[str, str] = Field(
        min_length=1, description="NodeId (e.g. 'ns=2;s=TT101' or 'ns=3;i=1001') → model tag.")
    security: OpcUaSecurityConfig = Field(default_factory=OpcUaSecurityConfig,
                                          description="Secure channel (policy, certificates).")
    username: str = Field(default="", description="User name; empty = anonymous.")
    password_file: Path | None = Field(default=None, description="File holding the password.")
    password_env: str = Field(default="", description="Environment variable with the password.")
    publishing_interval_ms: float = Field(
        default=500.0, gt=0, description="Subscription publishing interval: how often the "
                                         "server sends the changes it collected.")
    sampling_interval_ms: float = Field(
        default=0.0, ge=0, description="How often the server samples each node; 0 = as fast "
                                       "as it can (or on every write).")
    queue_size: int = Field(
        default=100, ge=1, description="Changes the server keeps per node between two "
                                       "publishes (1 = only the latest).")
    trigger: Literal["timestamp", "value"] = Field(
        default="timestamp", description="What makes a new sample: every new SourceTimestamp, "
        "even of an unchanged value (so a steady sensor does not look silent), or only a "
        "changed value or status (for servers without the StatusValueTimestamp trigger).")
    time: Literal["source", "server"] = Field(
        default="source", description="Event time of a sample: the value's SourceTimestamp "
                                      "(else its ServerTimestamp), or the ServerTimestamp; "
                                      "else the receive time.")
    accept_uncertain: bool = Field(default=False,
                                   description="Use values with an Uncertain status too.")
    timeout_s: float = Field(default=4.0, gt=0, description="Answer time of each request.")
    reconnect_min_s: float = Field(default=1.0, gt=0, description="First reconnect delay.")
    reconnect_max_s: float = Field(default=30.0, gt=0, description="Longest reconnect delay.")

    @field_validator("endpoint")
    @classmethod
    def _opc_tcp(cls, value: str) -> str:
        if not re.match(r"^opc\.tcp://[^/\s:]+(:\d+)?(/\S*)?$", value):
            raise ValueError(f"{value!r}: an endpoint looks like opc.tcp://host:4840/path")
        return value

    @field_validator("nodes")
    @classmethod
    def _node_ids(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [n for n in value if not _NODE_ID.match(n)]
        if bad:
            raise ValueError(f"not OPC UA NodeIds: {bad} (want e.g. 'ns=2;s=TT101', "
                             "'ns=3;i=1001')")
        empty = [n for n, tag in value.items() if not tag]
        if empty:
            raise ValueError(f"nodes {empty}: give the model tag each one feeds")
        return value

    def password(self) -> str | None:
        return read_secret(self.password_file, self.password_env)


class EdgeConfig(Strict):
    gateway: str = Field(default="gw1", description="This gateway's name (status topic).")
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    topics: TopicConfig = Field(default_factory=TopicConfig)
    models: list[ModelConfig] = Field(default_factory=list, description="Bundles to run.")
    cameras: list[CameraConfig] = Field(default_factory=list, description="Image QC stations.")
    metrics_port: int = Field(default=0, ge=0, le=65535, description="Prometheus; 0 = off.")
    metrics_host: str = Field(
        default="127.0.0.1", description="Address /metrics and /healthz listen on: an IP "
        "address of this host; 0.0.0.0 (or ::) = every interface, for a scraper elsewhere.")
    queue_size: int = Field(default=100_000, gt=0, description="Inbound messages held at most.")
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING, ERROR or "
                           "CRITICAL (any case); the CLI's --log-level overrides it.")
    log_format: Literal["text", "json"] = Field(default="text",
                                                description="json: one object per line.")
    event_time: EventTimeConfig = Field(default_factory=EventTimeConfig,
                                        description="Watermark, skew and allowed lateness.")
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    state_dir: Path = Field(
        default=Path("procedge-state"), description="The daemon's own state (commissioning "
        "baselines, versioned), relative to the config file.")
    alarms: AlarmConfig = Field(default_factory=AlarmConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig,
                               description="Drift monitor of series models (advisory alarms).")
    commands: CommandConfig = Field(default_factory=CommandConfig)
    reload: ReloadConfig = Field(default_factory=ReloadConfig)
    sparkplug: SparkplugConfig = Field(default_factory=SparkplugConfig,
                                       description="Sparkplug B input/output (off by default).")
    tag_map: dict[str, MappedTag] = Field(
        default_factory=dict, description="Tag → topic and payload path: read tags from an "
        "existing topic tree and payload shape without a bridge (several tags may share a "
        "topic). Unmapped tags arrive on `topics.raw`.")
    opcua: OpcUaConfig | None = Field(
        default=None, description="Also read tags from an OPC UA server (needs the `opcua` "
                                  "extra: asyncua).")
    workers: int | list[str] = Field(
        default=1, description="Worker processes: a number (named w0, w1, ...) or a list of "
        "names; models are dealt round-robin unless `models[].process` names one.")

    _workers = field_validator("workers")(check_workers)

    ha: HaConfig | None = Field(default=None, description="One peer of an active/standby "
                                "pair (docs/edge_daemon.md); absent: this daemon runs alone.")

    @field_validator("metrics_host")
    @classmethod
    def _ip_address(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address (e.g. 127.0.0.1, 0.0.0.0, ::1)"
                             ) from None

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        return log_level(value)

    @model_validator(mode="after")
    def _something_to_run(self) -> EdgeConfig:
        if not self.models and not self.cameras:
            raise ValueError("give at least one entry in 'models' or 'cameras'")
        return self

    @model_validator(mode="after")
    def _partition(self) -> EdgeConfig:
        check_partition(self)
        return self

    @model_validator(mode="after")
    def _pair_sees_everything(self) -> EdgeConfig:
        """A pair's peers must each see every input and publish to the same result topics."""
        if self.ha is None:
            return self
        if self.mqtt.shared_group:
            raise ValueError("ha: a peer of a pair needs every input; mqtt.shared_group splits "
                             "them between daemons (remove one of the two)")
        if self.sparkplug.output is not None and not self.sparkplug.output.node:
            raise ValueError("ha: sparkplug.output.node is required in a pair: both peers are "
                             "one Sparkplug edge node, and the default (the gateway name) "
                             "differs between them")
        if len(worker_names(self)) > 1:
            raise ValueError("ha: a peer of a pair runs one process (workers: 1); the lease "
                             "is held per process, and workers would share one peer_id")
        for kind in PAIR_OUTPUTS:
            template = getattr(self.topics, kind)
            if "{gateway}" in template:
                raise ValueError(f"ha: topics.{kind} names {{gateway}}: both peers of a pair "
                                 "must publish a result to the same topic")
            if any(f in level and level != f for level in template.split("/")
                   for f in ("{model}", "{alarm_id}")):
                raise ValueError(f"ha: topics.{kind} {template!r}: {{model}} and {{alarm_id}} "
                                 "must be whole topic levels (the standby subscribes to them)")
        return self


def log_level(value: str) -> str:
    """A logging level name, upper-cased; anything else is an error listing the names."""
    level = str(value).strip().upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"unknown log level {value!r}: one of {', '.join(LOG_LEVELS)}")
    return level


def load_edge_config(path: str | Path) -> EdgeConfig:
    """Read and validate; an error (:class:`ConfigError`) names the file and the field."""
    path = Path(path)
    return resolve_paths(validate(EdgeConfig, read_yaml(path, "edge config"), path,
                                  "edge config"), path.parent)


def check_files(config: EdgeConfig, path: str | Path) -> None:
    """Before the daemon creates anything: every bundle, key and certificate the config at
    ``path`` names exists, else a :class:`ConfigError` naming the file and the fields."""
    missing = [(f"models[{i}].bundle", m.bundle) for i, m in enumerate(config.models)]
    missing += [(f"models[{i}].public_key", m.public_key) for i, m in enumerate(config.models)]
    for i, c in enumerate(config.cameras):
        missing += [(f"cameras[{i}].classifier", c.classifier),
                    (f"cameras[{i}].segmenter", c.segmenter)]
    if config.mqtt.tls is not None:
        t = config.mqtt.tls
        missing += [("mqtt.tls.ca_file", t.ca_file), ("mqtt.tls.cert_file", t.cert_file),
                    ("mqtt.tls.key_file", t.key_file)]
    missing += [("mqtt.password_file", config.mqtt.password_file)]
    missing += [(f"commands.operator_keys.{op}", key)
                for op, key in config.commands.operator_keys.items()]
    if config.opcua is not None:
        if find_spec("asyncua") is None:
            raise ConfigError(f"{path}: opcua: this section needs asyncua, which is not "
                              "installed: pip install -c constraints.txt '.[edge,opcua]'")
        o, sec = config.opcua, config.opcua.security
        missing += [("opcua.security.certificate", sec.certificate),
                    ("opcua.security.private_key", sec.private_key),
                    ("opcua.security.server_certificate", sec.server_certificate),
                    ("opcua.password_file", o.password_file)]
    absent = [f"  {field}: {p}: no such file or directory" for field, p in missing
              if p is not None and not p.exists()]
    if absent:
        raise ConfigError(f"{path}: invalid edge config\n" + "\n".join(absent))


def resolve_paths(config: EdgeConfig, base: Path) -> EdgeConfig:
    """Make every relative path relative to ``base`` (the config file's folder)."""
    def fix(p: Path | None) -> Path | None:
        return p if p is None or p.is_absolute() else (base / p).resolve()

    for model in config.models:
        model.bundle = fix(model.bundle)
        model.public_key = fix(model.public_key)
    for camera in config.cameras:
        camera.classifier, camera.segmenter = fix(camera.classifier), fix(camera.segmenter)
        camera.watch_dir = fix(camera.watch_dir)
    config.outbox.path = fix(config.outbox.path)
    config.state_dir = fix(config.state_dir)
    config.reload.models_dir = fix(config.reload.models_dir)
    config.commands.operator_keys = {op: fix(key)
                                     for op, key in config.commands.operator_keys.items()}
    if config.sparkplug.output is not None:
        config.sparkplug.output.outbox_path = fix(config.sparkplug.output.outbox_path)
    if config.opcua is not None:
        o, sec = config.opcua, config.opcua.security
        o.password_file = fix(o.password_file)
        sec.certificate, sec.private_key = fix(sec.certificate), fix(sec.private_key)
        sec.server_certificate = fix(sec.server_certificate)
    m = config.mqtt
    m.password_file = fix(m.password_file)
    if m.tls is not None:
        m.tls.ca_file = fix(m.tls.ca_file)
        m.tls.cert_file, m.tls.key_file = fix(m.tls.cert_file), fix(m.tls.key_file)
    return config
