"""``make demo``, README's first command, as a user runs it: ``procedge demo`` in a fresh
process (train, convert, a real Mosquitto, the daemon, a drifting sensor). A report line that
assumed every alarm carries contributions once crashed it after the daemon had done its work;
this runs the whole command so such a break shows here, not on a user's first try."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_procedge_demo_runs_to_the_end_and_names_the_drifting_sensor(tmp_path):
    done = subprocess.run([sys.executable, "-m", "procedge", "demo", "--workdir",
                           str(tmp_path / "demo"), "--require-mosquitto"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert "4/4 daemon stopped (exit 0)" in out
    raises = [line for line in out.splitlines()
              if "tank_anomaly.anomaly" in line and " RAISE " in line]
    assert raises, out[-3000:]
    assert re.search(r"culprits: temperature \d+%", raises[0]), raises[0]
    assert re.search(r"forecast temperature \[degC\] at \S+: [\d. ]+$", out, re.MULTILINE)
