"""The ``ha:`` section: this gateway as one peer of an active/standby pair (docs/edge_daemon.md,
"Active/standby pair"). Absent: the daemon runs alone, as it always did.

Kept apart from :mod:`edge_runtime.config` so the pair's settings and their checks read in one
place; the lease itself is :mod:`edge_runtime.lease`, the hand-over :mod:`edge_runtime.failover`.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from edge_runtime.contract import Strict


class HaConfig(Strict):
    """One peer of a pair: both run the same models on the same inputs; the lease says which
    one publishes results and writes set-points."""

    peer_id: str = Field(description="This peer's id in the pair (one topic level), e.g. gw-a.")
    priority: int = Field(default=0, ge=0, description="When no peer holds the lease, the live "
                          "peer with the lowest number takes it (ties: the lower peer_id).")
    lease_topic: str = Field(description="Topic prefix the pair shares: each peer's retained "
                             "status (and Last Will) is <lease_topic>/<peer_id>. One per pair.")
    keepalive_s: int = Field(default=2, ge=1, le=60, description="MQTT keepalive of the lease "
                             "connection: a peer that dies silently (power, network) is offline "
                             "for the broker after 1.5 x this. A crash that closes the socket: "
                             "at once.")
    heartbeat_s: float = Field(default=2.0, gt=0, le=60, description="Each peer re-publishes "
                               "its status this often; one not heard for 3 x this is dead "
                               "(a retained 'online' left by a broker restart is not a lease).")
    max_held: int = Field(default=20_000, gt=0, description="Results the standby holds until "
                          "it sees the active publish them (oldest dropped beyond, counted).")

    @field_validator("peer_id")
    @classmethod
    def _one_level(cls, value: str) -> str:
        if not value or set(value) & set("+#/ ") or value.startswith("$"):
            raise ValueError(f"{value!r} must be one non-empty topic level without + # / $ "
                             "or space")
        return value

    @field_validator("lease_topic")
    @classmethod
    def _exact_topic(cls, value: str) -> str:
        levels = value.split("/")
        if not all(levels) or set(value) & set("+# ") or value.startswith("$"):
            raise ValueError(f"{value!r}: give an exact topic prefix (non-empty levels, no "
                             "+ # $ or space), e.g. procedge/ha/line1")
        return value
