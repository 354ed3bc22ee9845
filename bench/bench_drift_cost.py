"""What the drift monitor costs per window, measured in one run: the same simulated rows
through a bundle's :class:`ModelPipeline` with the monitor (``drift.enabled``) and without,
in batches of windows as the daemon flushes them; the table gives the pipeline's own stage
timings (the monitor runs in "post") per window, and their ratio.

    python bench/bench_drift_cost.py BUNDLE_DIR [BUNDLE_DIR ...] --rows 3000 --batch 16
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_runtime.bundle import Bundle  # noqa: E402
from edge_runtime.config import DriftConfig  # noqa: E402
from edge_runtime.pipelines import ModelPipeline  # noqa: E402
from training.simulator import simulate  # noqa: E402


def per_window_us(bundle: Path, rows: np.ndarray, stamps: np.ndarray, batch: int,
                  enabled: bool) -> dict[str, float]:
    """Mean µs per window of each stage, windows run ``batch`` at a time."""
    pipeline = ModelPipeline("m", Bundle.load(bundle), drift=DriftConfig(enabled=enabled))
    length = pipeline.bundle.manifest.input.window
    ends = list(range(length, len(rows) + 1))
    for k in range(0, len(ends), batch):
        for end in ends[k:k + batch]:
            pipeline._times.append(float(stamps[end - 1]))
            pipeline._windows.append(rows[end - length:end].astype(np.float32))
        pipeline.flush()
    n = sum(t.windows for t in pipeline.timings)
    return {stage: 1e6 * sum(getattr(t, stage) for t in pipeline.timings) / n
            for stage in ("pre", "invoke", "post")}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundles", type=Path, nargs="+")
    p.add_argument("--rows", type=int, default=3000)
    p.add_argument("--batch", type=int, default=16, help="windows per flush")
    p.add_argument("--repeat", type=int, default=3, help="alternating runs of each")
    args = p.parse_args(argv)
    run = simulate(args.rows, 5.0, seed=1)
    print(f"{args.rows} rows, {args.batch} windows per flush, best of {args.repeat}")
    print("| bundle | post off µs | post on µs | all stages off µs | all on µs | on/off |")
    print("|---|---|---|---|---|---|")
    for bundle in args.bundles:
        best: dict[bool, dict[str, float]] = {}
        for _ in range(args.repeat):
            for enabled in (False, True):
                got = per_window_us(bundle, run.values, run.timestamps, args.batch, enabled)
                if enabled not in best or sum(got.values()) < sum(best[enabled].values()):
                    best[enabled] = got
        off, on = sum(best[False].values()), sum(best[True].values())
        print(f"| {bundle.name} | {best[False]['post']:.1f} | {best[True]['post']:.1f} | "
              f"{off:.1f} | {on:.1f} | {on / off:.2f} |")


if __name__ == "__main__":
    main()
