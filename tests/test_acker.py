"""The acker acknowledges a batch's inputs only after the commits before it are durable."""

from __future__ import annotations

from pathlib import Path

from edge_runtime.acker import InputAcker
from edge_runtime.outbox import Message, Outbox


def test_inputs_are_acked_in_order_after_one_sync_covering_their_commits(tmp_path: Path):
    box = Outbox(tmp_path / "o.db", synchronous="FULL")
    log: list[str] = []
    real_sync = box.sync
    box.sync = lambda: (log.append(f"sync depth={box.depth}"), real_sync())[1]
    acker = InputAcker([box], lambda inputs: log.extend(f"ack {i}" for i in inputs))
    for batch in ([1, 2], [3], [4, 5]):  # committed before the acker runs: one group
        box.put([Message(f"t/{batch[0]}", b"{}")], sync=False)
        acker.submit(batch)
    acker.start()
    acker.stop()
    assert log[0] == "sync depth=3"  # all three commits, before any acknowledgement
    assert [e for e in log if e.startswith("ack")] == [f"ack {i}" for i in range(1, 6)]
    assert not acker.is_alive()


def test_a_failed_sync_acknowledges_nothing(tmp_path: Path):
    box = Outbox(tmp_path / "o.db", synchronous="FULL")
    box.sync = lambda: (_ for _ in ()).throw(OSError("disk gone"))
    acked: list[int] = []
    acker = InputAcker([box], acked.extend)
    acker.start()
    acker.submit([1, 2])
    acker.stop()
    assert acked == []  # unacknowledged inputs are redelivered; an early ack could lose one
