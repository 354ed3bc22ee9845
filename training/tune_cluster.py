"""KerasTuner's distributed mode for `procedge tune`: one chief serves the oracle over gRPC,
workers ask it for trials, run them and report back.

Every process runs the same command; the environment says which it is (KerasTuner's own
variables): ``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT`` (the chief's address),
``KERASTUNER_TUNER_ID`` (``chief`` for the chief, ``tuner0``, ``tuner1``, … for workers).
The chief writes the results; workers keep KerasTuner's files in a temporary directory.

Why a serving loop of our own (:func:`serve`) and not KerasTuner's ``start_server``: that one
polls every 20 s once the search is over, and exits as soon as the workers that have *already
connected* are done, so a worker still importing TensorFlow would then wait an hour for a
chief that is gone (its client retries with ``wait_for_ready``). Here the chief waits for
``workers`` distinct workers and polls every 0.2 s.
"""

from __future__ import annotations

import os
import time
from concurrent import futures

from edge_runtime.validation import ConfigError

ENV = ("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID")


def role() -> str:
    """``local`` (no chief address set), ``chief`` or ``worker``; a partial setting is an
    error naming the missing variable."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "local"
    missing = [name for name in ENV if not os.environ.get(name)]
    if missing:
        raise ConfigError(f"distributed tuning: KERASTUNER_ORACLE_IP is set but "
                          f"{', '.join(missing)} is not (see docs/soft_sensors.md, Tuning)")
    return "chief" if "chief" in os.environ["KERASTUNER_TUNER_ID"] else "worker"


def tuner_id() -> str:
    return os.environ.get("KERASTUNER_TUNER_ID", "tuner0")


def serve(oracle, workers: int = 1, poll_s: float = 0.2) -> None:
    """Serve ``oracle`` at ``KERASTUNER_ORACLE_IP:PORT`` until the search is over: a worker
    was told to stop, ``workers`` distinct workers have asked for trials, and none is still
    running one."""
    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer, exit_chief

    seen: set[str] = set()

    class Servicer(OracleServicer):
        def CreateTrial(self, request, context):  # noqa: N802 (gRPC's method name)
            seen.add(request.tuner_id)
            return super().CreateTrial(request, context)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = Servicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
    server.add_insecure_port(address)
    server.start()
    print(f"chief: oracle at {address}, waiting for {workers} worker(s)", flush=True)
    try:
        while not (servicer.stop_triggered and len(seen) >= workers and exit_chief(oracle)):
            time.sleep(poll_s)
    finally:
        server.stop(grace=1.0)
    print(f"chief: search over; workers seen: {', '.join(sorted(seen))}", flush=True)
