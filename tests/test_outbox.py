"""The SQLite outbox: order, bounds with priority eviction, historical flag, crash safety."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from edge_runtime import outbox as outbox_module
from edge_runtime.outbox import PRIO_ALARM, PRIO_FORECAST, Message, Outbox


def msg(i: int, prio: int = PRIO_FORECAST) -> Message:
    return Message(f"t/{i}", json.dumps({"i": i}).encode(), prio)


def test_order_remove_and_reopen(tmp_path: Path):
    box = Outbox(tmp_path / "o.db")
    box.put([msg(i) for i in range(5)], {"alarm:x": "{}"})
    rows = box.peek(0, 10)
    assert [m.topic for m in rows] == [f"t/{i}" for i in range(5)]
    box.remove([rows[0].row, rows[2].row])
    assert box.depth == 3
    box.close()
    again = Outbox(tmp_path / "o.db")
    assert [m.topic for m in again.peek(0, 10)] == ["t/1", "t/3", "t/4"]
    assert again.state() == {"alarm:x": "{}"} and again.depth == 3
    assert [m.topic for m in again.peek(rows[3].row, 10)] == ["t/4"]


def test_full_outbox_evicts_forecasts_first(tmp_path: Path):
    box = Outbox(tmp_path / "o.db", max_rows=10)
    box.put([msg(i, PRIO_ALARM) for i in range(4)])
    box.put([msg(100 + i) for i in range(6)])
    box.put([msg(200 + i, PRIO_ALARM) for i in range(3)])  # 13 > 10: three forecasts go
    kept = [m.topic for m in box.peek(0, 100)]
    assert box.depth == 10 and box.evicted == {PRIO_FORECAST: 3}
    assert kept[:4] == [f"t/{i}" for i in range(4)] and "t/100" not in kept
    box.put([msg(300 + i, PRIO_ALARM) for i in range(8)])  # forecasts gone, then oldest alarms
    assert box.evicted == {PRIO_FORECAST: 6, PRIO_ALARM: 5}
    assert all(m.priority == PRIO_ALARM for m in box.peek(0, 100))


def test_late_json_is_flagged_historical():
    m = Message("t", b'{"a": 1}', created_s=100.0)
    assert json.loads(m.for_sending(105.0, 10.0)) == {"a": 1}
    assert json.loads(m.for_sending(111.0, 10.0)) == {"a": 1, "historical": True}
    raw = Message("t", b"\x00\x01", is_json=False, created_s=0.0)
    assert raw.for_sending(1e9, 1.0) == b"\x00\x01"


def test_rows_survive_sigkill(tmp_path: Path):
    code = (f"import os, signal\nfrom edge_runtime.outbox import Outbox, Message\n"
            f"b = Outbox({str(tmp_path / 'o.db')!r})\n"
            f"b.put([Message('t/%d' % i, b'{{}}') for i in range(50)])\n"
            f"os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent.parent)
    assert proc.returncode == -signal.SIGKILL
    assert Outbox(tmp_path / "o.db").depth == 50


def test_full_syncs_the_wal_once_per_commit_and_normal_never(tmp_path: Path, monkeypatch):
    synced: list[int] = []
    real = outbox_module._datasync
    monkeypatch.setattr(outbox_module, "_datasync", lambda fd: (synced.append(fd), real(fd)))
    full = Outbox(tmp_path / "full.db", synchronous="FULL")
    full.put([msg(0)])  # sync=True: durable on return
    assert len(synced) == 1
    full.put([msg(1)], sync=False)
    full.put([msg(2)], sync=False)
    assert len(synced) == 1  # deferred ...
    full.sync()
    full.sync()  # ... one fsync for both commits; an idle sync costs nothing
    assert len(synced) == 2
    normal = Outbox(tmp_path / "normal.db", synchronous="NORMAL")
    normal.put([msg(0)])
    normal.sync()
    assert len(synced) == 2
    full.close()
    assert [m.topic for m in Outbox(tmp_path / "full.db").peek(0, 10)] == ["t/0", "t/1", "t/2"]
