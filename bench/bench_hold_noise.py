"""Diagnostic (not pre-registered) after the TEP sample-and-hold runs: the CVAE of run 4
(seed 0, the settings of ``procedge eval generative``) retrained; its decoder noise on held
and other tags, and the size of the held tags' steps and their spread within a window, real
(held-apart normal windows) against generated (held), in scaled units.

    PROCEDGE_DATA=… python bench/bench_hold_noise.py      # ~1 min on 2 cores
"""

import os
from pathlib import Path

import keras
import numpy as np

from evaluation.generative import load_classes, split
from training.registry import get_family

root = Path(os.environ["PROCEDGE_DATA"]) / "tep"
rows, names = load_classes(root, [1, 2, 4])
train, test, _ = split(rows, 0.7, 16)
keras.utils.set_random_seed(0)
m = get_family("cvae", "generative").build(16, 52, 4, latent_dim=16, filters=64)
m.fit(train[0], train[1], 3000, 64, 0, {}, desc="cvae")
held = m.learn_sampling(train[0])
fc = np.repeat(np.arange(4), np.bincount(train[1], minlength=4))
fake = m.sample(fc, seed=0)
for k in (2, 5):
    tags = np.flatnonzero(held == k)
    print(f"cadence {k}: noise_phi mean {m.noise_phi[tags].mean():.3f} "
          f"(min {m.noise_phi[tags].min():.3f}), noise_std mean {m.noise_std[tags].mean():.3f}")
    for name, x, c in (("real held-apart", test[0], test[1]), ("generated", fake, fc)):
        xn = x[c == 0][:, :, tags]
        d = np.diff(xn, axis=1)
        jumps = np.abs(d[d != 0])
        print(f"  normal, {name}: mean |step| at changes {jumps.mean():.3f}, "
              f"within-window std {xn.std(axis=1).mean():.3f}")
other = np.flatnonzero(held == 1)
print(f"other tags: noise_phi mean {m.noise_phi[other].mean():.3f}, "
      f"noise_std mean {m.noise_std[other].mean():.3f}")
