"""Distributed `procedge tune` on one machine: a chief and N workers on 127.0.0.1.

Starts the same `procedge tune CONFIG --out OUT` N + 1 times with KerasTuner's variables
(``KERASTUNER_TUNER_ID`` chief / tuner0 / tuner1 …, ``KERASTUNER_ORACLE_IP`` 127.0.0.1,
``KERASTUNER_ORACLE_PORT`` a free port), waits, and checks: every process exits 0, each
worker ran at least one trial, the chief's trials table holds exactly the trials the workers
ran, and OUT holds only the chief's files (the workers write nothing there).

    python bench/tune_distributed.py configs/tank_soft_sensor_tune.yaml --workers 2 \
        --out /tmp/tune-dist [--trials 4 --epochs 2]

``--trials``/``--epochs`` write a copy of the config with a smaller budget (a quick check).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from procedge.broker import free_port  # noqa: E402

EXPECTED = {"kt", "trials.csv", "trials.json", "trials.png"}


def smaller(config: Path, trials: int | None, epochs: int | None, where: Path) -> Path:
    """A copy of ``config`` with tune.max_trials / tune.epochs replaced (data.path absolute)."""
    if trials is None and epochs is None:
        return config
    raw = yaml.safe_load(config.read_text())
    if trials is not None:
        raw["tune"]["max_trials"] = trials
    if epochs is not None:
        raw["tune"]["epochs"] = epochs
    path = where / config.name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--trials", type=int)
    parser.add_argument("--epochs", type=int)
    args = parser.parse_args(argv)
    config = smaller(args.config, args.trials, args.epochs, Path(tempfile.mkdtemp()))
    port = free_port()
    base = os.environ | {"KERASTUNER_ORACLE_IP": "127.0.0.1",
                         "KERASTUNER_ORACLE_PORT": str(port), "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "procedge", "tune", str(config), "--out", str(args.out)]
    ids = ["chief"] + [f"tuner{i}" for i in range(args.workers)]
    start = time.monotonic()
    procs = {}
    for tuner in ids:
        extra = ["--workers", str(args.workers)] if tuner == "chief" else []
        procs[tuner] = subprocess.Popen(command + extra, cwd=ROOT, text=True,
                                        env=base | {"KERASTUNER_TUNER_ID": tuner},
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    outputs = {t: p.communicate(timeout=3600)[0] for t, p in procs.items()}
    wall = time.monotonic() - start
    ok = True
    ran: dict[str, set[str]] = {}
    for tuner, proc in procs.items():
        lines = [line for line in outputs[tuner].splitlines()
                 if not line.startswith(("WARNING: All log", "I0000"))]
        print(f"--- {tuner} (exit {proc.returncode})")
        print("\n".join(lines[-12:]))
        ok &= proc.returncode == 0
        ran[tuner] = set(re.findall(rf"^{tuner} trial (\d+):", outputs[tuner], re.M))
    with (args.out / "trials.csv").open() as handle:
        table = {row["trial"] for row in csv.DictReader(handle)}
    by_workers = set().union(*(ran[t] for t in ids[1:]))
    written = {p.name for p in args.out.iterdir()}
    checks = {
        "every worker ran a trial": all(ran[t] for t in ids[1:]),
        "the chief ran none": not ran["chief"],
        "table = trials the workers ran": table == by_workers,
        "out holds only the chief's files": written - EXPECTED == {
            n for n in written if n.endswith(".tuned.yaml")} and written >= EXPECTED,
    }
    print(f"--- trials per worker: { {t: sorted(ran[t]) for t in ids[1:]} }; "
          f"table: {sorted(table)}; out: {sorted(written)}; wall {wall:.1f} s")
    for name, passed in checks.items():
        print(f"{'PASS' if passed else 'FAIL'}: {name}")
    return 0 if ok and all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
