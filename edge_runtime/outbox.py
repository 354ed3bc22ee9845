"""A bounded, crash-safe outbox: every outgoing event waits on disk until the broker has it.

Rows are appended in one SQLite transaction per batch (WAL mode) and deleted only when the
broker's QoS 1 PUBACK for them arrived, so neither a broker outage nor a SIGKILL of the daemon
loses an alarm: on restart the rows drain in their original order. The table is bounded: when
full, the lowest priority rows (forecasts) are evicted first, the oldest first, alarms last;
every eviction is counted. A small key/value table holds the alarm states in the same file, so
an event and the state it leads to are committed together.

``synchronous: FULL`` (survives power loss) is SQLite's WAL-mode ``NORMAL`` plus one sync of
the WAL file after each commit (sqlite.org/pragma.html#pragma_synchronous). The outbox does
that sync itself, so a caller can commit, start publishing, and only then wait for the disk
(:meth:`Outbox.put` with ``sync=False``, then :meth:`Outbox.sync`): the fsync overlaps the
network round trip instead of delaying every alarm by it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# SQLite's own sync on Linux; macOS has no fdatasync.
_datasync = getattr(os, "fdatasync", os.fsync)

# Priorities: higher survives longer when the outbox is full.
PRIO_FORECAST = 0
PRIO_STATUS = 1
PRIO_ALARM = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain INTEGER NOT NULL DEFAULT 0,
    priority INTEGER NOT NULL,
    created_s REAL NOT NULL,
    is_json INTEGER NOT NULL DEFAULT 1,
    qos INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS outbox_evict ON outbox (priority, id);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Message:
    """One outgoing message as queued (``row`` orders the drain)."""

    topic: str
    payload: bytes
    priority: int = PRIO_FORECAST
    retain: bool = False
    is_json: bool = True
    row: int = 0
    created_s: float = 0.0
    qos: int = 1  # 0 for what must go out at QoS 0 (a Sparkplug NCMD); the row still waits
    #               for paho's write to the socket before it leaves the outbox

    def for_sending(self, now_s: float, late_after_s: float) -> bytes:
        """The payload as sent: JSON events sent late are flagged ``historical: true``."""
        if not self.is_json or now_s - self.created_s <= late_after_s:
            return self.payload
        body = json.loads(self.payload)
        if isinstance(body, dict):
            body["historical"] = True
            return json.dumps(body).encode()
        return self.payload


class Outbox:
    """SQLite-backed FIFO with priority eviction; safe to call from several threads."""

    def __init__(self, path: str | Path, max_rows: int = 100_000, synchronous: str = "FULL"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()  # not _lock: the sender's reads need not wait
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # FULL's extra WAL sync: see sync()
        self._db.executescript(_SCHEMA)
        if "qos" not in {r[1] for r in self._db.execute("PRAGMA table_info(outbox)")}:
            self._db.execute("ALTER TABLE outbox ADD COLUMN qos INTEGER NOT NULL DEFAULT 1")
        self.durable = synchronous == "FULL"
        self._wal_fd: int | None = None
        self._unsynced = False  # a commit since the last sync (an idle fdatasync still costs)
        # Deletes after a PUBACK go through a second connection without fsync: losing one in
        # a power cut only means that message is sent again (a duplicate QoS 1 allows).
        self._db_acks = sqlite3.connect(self.path, check_same_thread=False,
                                        isolation_level=None)
        self._db_acks.execute("PRAGMA synchronous=NORMAL")
        self.evicted: dict[int, int] = {}  # priority -> rows evicted since start
        self._depth = self._count()

    def _count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    @property
    def depth(self) -> int:
        return self._depth

    def put(self, messages: list[Message], state: dict[str, str] | None = None,
            sync: bool = True) -> None:
        """Append messages (and upsert ``state`` entries) in one transaction, durable on
        return; with ``sync=False`` durable only after the caller's :meth:`sync`."""
        if not messages and not state:
            return
        now = time.time()
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT INTO outbox (topic, payload, retain, priority, created_s, is_json,"
                    " qos) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(m.topic, m.payload, int(m.retain), m.priority, m.created_s or now,
                      int(m.is_json), m.qos) for m in messages])
                for key, value in (state or {}).items():
                    db.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)",
                               (key, value))
                self._depth += len(messages)
                if self._depth > self.max_rows:
                    self._evict(self._depth - self.max_rows)
                db.execute("COMMIT")
                self._unsynced = True
            except BaseException:
                db.execute("ROLLBACK")
                self._depth = self._count()
                raise
        if sync:
            self.sync()

    def sync(self) -> None:
        """Flush the committed transactions to the disk (``synchronous: FULL``; a no-op with
        ``NORMAL``, where a committed row survives a crash of the process but not of the OS)."""
        if not self.durable:
            return
        with self._sync_lock:  # a caller returns only after a sync that began after its commit
            if not self._unsynced:
                return
            self._unsynced = False
            if self._wal_fd is None:  # the WAL exists once committed to, while we are open
                self._wal_fd = os.open(f"{self.path}-wal", os.O_RDONLY)
            _datasync(self._wal_fd)  # releases the GIL: the sender publishes meanwhile

    def _evict(self, n: int) -> None:
        """Drop ``n`` rows: lowest priority first, oldest first within a priority."""
        rows = self._db.execute(
            "SELECT id, priority FROM outbox ORDER BY priority, id LIMIT ?", (n,)).fetchall()
        self._db.executemany("DELETE FROM outbox WHERE id = ?", [(r[0],) for r in rows])
        for _, priority in rows:
            self.evicted[priority] = self.evicted.get(priority, 0) + 1
        self._depth -= len(rows)

    def peek(self, after_row: int, limit: int) -> list[Message]:
        """The oldest ``limit`` rows with ``row > after_row``, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload, retain, priority, created_s, is_json, qos FROM outbox"
                " WHERE id > ? ORDER BY id LIMIT ?", (after_row, limit)).fetchall()
        return [Message(topic=r[1], payload=bytes(r[2]), retain=bool(r[3]), priority=r[4],
                        created_s=r[5], is_json=bool(r[6]), row=r[0], qos=r[7]) for r in rows]

    def remove(self, rows: list[int]) -> None:
        """Forget rows the broker acknowledged (a row evicted meanwhile is simply gone)."""
        if not rows:
            return
        with self._lock:
            db = self._db_acks
            db.execute("BEGIN IMMEDIATE")
            gone = db.executemany("DELETE FROM outbox WHERE id = ?", [(r,) for r in rows])
            db.execute("COMMIT")
            self._depth -= max(gone.rowcount, 0)

    def state(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT key, value FROM kv").fetchall())

    def close(self) -> None:
        with self._lock:
            if self._wal_fd is not None:
                os.close(self._wal_fd)
                self._wal_fd = None
            self._db_acks.close()
            self._db.close()
