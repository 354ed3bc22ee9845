"""Latency of one window through the LiteRT interpreter, as the gateway will run it."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edge_runtime.interpreter import EdgeModel


def window_latency_ms(tflite_path: Path, window: np.ndarray, threads: int = 1,
                      repeats: int = 200, max_s: float = 2.0) -> dict[str, float]:
    """Median and p99 of single-window ``predict`` calls (after a warm-up), in milliseconds.
    Stops early after ``max_s`` so a slow reference-kernel model cannot stall a conversion."""
    model = EdgeModel(tflite_path, num_threads=threads)
    x = np.asarray(window, np.float32)[None]
    for _ in range(10):
        model.predict(x)
    times: list[float] = []
    deadline = time.perf_counter() + max_s
    while len(times) < repeats and (len(times) < 20 or time.perf_counter() < deadline):
        start = time.perf_counter()
        model.predict(x)
        times.append(time.perf_counter() - start)
    ms = np.asarray(times) * 1e3
    return {"p50_ms": float(np.median(ms)), "p99_ms": float(np.percentile(ms, 99)),
            "n": len(ms)}


def batch_throughput(tflite_path: Path, windows: np.ndarray, threads: int = 1) -> float:
    """Windows per second when a whole batch is handed over at once (replays, backfills)."""
    model = EdgeModel(tflite_path, num_threads=threads)
    x = np.asarray(windows, np.float32)
    model.predict(x)  # resizes the input to this batch: not part of the timing
    times = []
    for _ in range(3):
        start = time.perf_counter()
        model.predict(x)
        times.append(time.perf_counter() - start)
    return len(x) / min(times)
