"""The particle sizer's edge time per frame, by stage, on one thread: generated development
frames (seed 500, the held-apart generator's settings of ``procedge eval particles``, never
its test seed) as PNG bytes through a camera's whole path — decode, preprocess, LiteRT,
sizing — and, beside it, the sizing as it was before it was made cheaper
(``tests/particles_reference.py``) on the same model output, so both are timed in one run.

Each frame is run ``--repeat`` times, interleaved; per frame the best run is kept, and the
table gives the median over frames of those bests, as wall time and as this thread's CPU
time (``time.thread_time``: on a loaded machine the wall time also holds the waits for a
core). The load average is printed with it.

    python bench/bench_particle_edge.py BUNDLE_DIR [--frames 10] [--repeat 9]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_runtime import particles  # noqa: E402
from edge_runtime.bundle import Bundle  # noqa: E402
from edge_runtime.imaging import ImagePipeline, decode_image  # noqa: E402
from edge_runtime.particles import preprocess, size_particles  # noqa: E402
from evaluation.particles import TEST_GEN  # noqa: E402
from tests import particles_reference as reference  # noqa: E402
from training.images.micrographs import MicrographConfig, generate_set  # noqa: E402

DEV_SEED = 500


def frames(n: int, size: int) -> list[bytes]:
    cfg = MicrographConfig.model_validate(TEST_GEN | {"size": size, "um_per_px": 1.0})
    out = []
    for m in generate_set(cfg, n, DEV_SEED):
        buf = io.BytesIO()
        Image.fromarray(m.image).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def former_sizing(probs: np.ndarray, um_per_px: float) -> tuple[dict, np.ndarray]:
    """``size_particles`` with the former class picking (argmax) and instance finding."""
    kept = particles.instances, particles.classes_of
    particles.instances, particles.classes_of = (reference.instances,
                                                 lambda p: np.argmax(p, axis=-1))
    try:
        return size_particles(probs, um_per_px)
    finally:
        particles.instances, particles.classes_of = kept


def clock(fn, *args) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), time.thread_time()
    out = fn(*args)
    return 1e3 * (time.perf_counter() - wall), 1e3 * (time.thread_time() - cpu), out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", type=Path)
    p.add_argument("--frames", type=int, default=10)
    p.add_argument("--repeat", type=int, default=9)
    args = p.parse_args(argv)
    camera = ImagePipeline("scope", segmenter=Bundle.load(args.bundle), threads=1)
    model = camera.segmenter
    spec = model.spec
    stages = ("decode", "preprocess", "litert", "sizing", "stages_total", "whole_path",
              "sizing_former")
    best = {s: {"wall": [], "cpu": []} for s in stages}
    for payload in frames(args.frames, spec.width):
        mine = {s: [np.inf, np.inf] for s in stages}
        for _ in range(args.repeat):
            got = {}
            got["decode"] = clock(decode_image, payload)
            img = got["decode"][2]
            got["preprocess"] = clock(preprocess, np.asarray(img), spec.flatten_px)
            got["litert"] = clock(model.run, got["preprocess"][2])
            got["sizing"] = clock(size_particles, got["litert"][2], spec.um_per_px)
            got["sizing_former"] = clock(former_sizing, got["litert"][2], spec.um_per_px)
            got["whole_path"] = clock(camera.process, payload)
            (new, new_labels), (old, old_labels) = got["sizing"][2], got["sizing_former"][2]
            if new != old or not np.array_equal(new_labels, old_labels):
                raise SystemExit("the sizing differs from the former one on a frame")
            parts = ("decode", "preprocess", "litert", "sizing")
            got["stages_total"] = (sum(got[s][0] for s in parts), sum(got[s][1] for s in parts),
                                   None)
            for s in stages:
                mine[s] = [min(mine[s][0], got[s][0]), min(mine[s][1], got[s][1])]
        for s in stages:
            best[s]["wall"].append(mine[s][0])
            best[s]["cpu"].append(mine[s][1])
    print("sizing: payloads and labels equal to the former code's on every frame")
    load = os.getloadavg()
    print(f"{args.frames} frames {spec.width}x{spec.height}, per frame best of {args.repeat}, "
          f"median over frames; load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    print("| stage | wall ms | thread CPU ms |\n|---|---|---|")
    table = {}
    for s in stages:
        wall, cpu = statistics.median(best[s]["wall"]), statistics.median(best[s]["cpu"])
        table[s] = {"wall_ms": wall, "cpu_ms": cpu}
        print(f"| {s} | {wall:.2f} | {cpu:.2f} |")
    return table


if __name__ == "__main__":
    main()
