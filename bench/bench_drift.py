"""Which alarm comes first, drift or anomaly, when a simulated sensor drifts slowly?

For each seed, a normal run of the tank simulator and the same run with ``--tag`` drifting by
each ``--rates`` (units per hour) from ``--warmup`` rows on (default: the bundle's drift
window, so the monitor starts full) go through the gateway's own :class:`ModelPipeline` (no
MQTT: the same windows, model, alarm logic and drift monitor the daemon runs). The table
gives, after the warm-up, the row of the first raise of the anomaly alarm (AE), of the drift
alarm of the drifting tag (drift) and of any other tag's drift alarm (other), and which of AE
and drift came first. The normal runs show the false alarms of both.

    python bench/bench_drift.py BUNDLE_DIR --tag flow_in --rates 1 2 4 --seeds 10-19
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_runtime.bundle import Bundle  # noqa: E402
from edge_runtime.pipelines import ModelPipeline  # noqa: E402
from training.simulator import Fault, simulate  # noqa: E402


def first_raises(bundle: Path, seed: int, steps: int, warmup: int, tag: str,
                 rate_per_h: float) -> dict[str, int | None]:
    """Row of the first raise after ``warmup`` of: the anomaly alarm, the drift alarm of
    ``tag``, any other drift alarm (None: none within ``steps``)."""
    b = Bundle.load(bundle)
    period = b.manifest.input.period_s
    faults = [Fault("drift", tag, warmup * period, rate_per_h / 3600)] if rate_per_h else []
    run = simulate(steps, period, seed=seed, faults=faults)
    pipeline = ModelPipeline("m", b)
    length = b.manifest.input.window
    found: dict[str, int | None] = {"ae": None, "drift": None, "other": None}
    for end in range(length, steps + 1):
        for out in pipeline.infer(float(run.timestamps[end - 1]), run.values[end - length:end]):
            if out.kind != "alarm" or out.payload["event"] != "raise" or end - 1 < warmup:
                continue
            drift = out.payload.get("drift")
            key = "ae" if drift is None else "drift" if drift["tag"] == tag else "other"
            if found[key] is None:
                found[key] = end - 1
    return found


def seeds_of(text: str) -> list[int]:
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", type=Path, help="an anomaly bundle trained on the simulator")
    p.add_argument("--tag", default="flow_in")
    p.add_argument("--rates", type=float, nargs="+", default=[1.0, 2.0, 4.0],
                   help="drift rates, tag units per hour")
    p.add_argument("--seeds", default="10-19", help="e.g. 10-19")
    p.add_argument("--steps", type=int, default=2400, help="rows per run")
    p.add_argument("--warmup", type=int, default=0, help="rows before the drift (0: the "
                   "bundle's drift window)")
    args = p.parse_args(argv)
    spec = Bundle.load(args.bundle).manifest.drift
    if spec is None:
        raise SystemExit(f"{args.bundle}: no drift statistics in the manifest")
    warmup = args.warmup or spec.window
    print(f"bundle {args.bundle}; drift window {spec.window} rows; tag {args.tag}; drift from "
          f"row {warmup}; {args.steps} rows per run")
    print("| seed | rate/h | AE | drift | other | first |")
    print("|---|---|---|---|---|---|")
    counts: dict[float, list[int]] = {}
    for seed in seeds_of(args.seeds):
        for rate in [0.0, *args.rates]:
            r = first_raises(args.bundle, seed, args.steps, warmup, args.tag, rate)
            ae, drift = r["ae"], r["drift"]
            first = ("-" if ae is None and drift is None else "drift"
                     if ae is None or (drift is not None and drift < ae) else "AE")
            counts.setdefault(rate, []).append(first == "drift")
            print(f"| {seed} | {rate:g} | {ae or '-'} | {drift or '-'} | {r['other'] or '-'} "
                  f"| {first} |")
    for rate, firsts in counts.items():
        print(f"rate {rate:g}/h: drift alarm first in {sum(firsts)} of {len(firsts)} runs")


if __name__ == "__main__":
    main()
