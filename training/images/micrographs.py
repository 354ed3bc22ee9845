"""Synthetic micrographs of particles with known ground truth: the test bed of task
``particle_size`` (no labelled plant micrographs ship with procedge).

Each image holds ellipses whose equivalent circle diameters (ECD, µm) are drawn from a
log-normal or a bimodal (two log-normal) distribution, from round to elongated (aspect ratio
up to ``max_aspect``) at random orientations, placed so that some touch and overlap slightly;
then uneven illumination, blur and noise. The calibration (µm per pixel) is known, so the
ground truth is exact: the drawn diameters, the instance mask, D10/D50/D90.

Particles lie wholly inside the frame (a sizing protocol excludes particles cut by the border;
here none are), so the drawn diameters are the ones an ideal instrument would measure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from edge_runtime.contract import Strict
from edge_runtime.particles import boundary_of, distribution


class MicrographConfig(Strict):
    """How micrographs are drawn. ``d50_um`` / ``sigma``: the log-normal median and log-sd of
    the ECD; ``bimodal``: a second mode at ``d50_um * mode_ratio`` holding ``mode_share`` of
    the particles. ``d50_range``: each image draws its own median (log-uniform) in place of
    ``d50_um``, so a set spans a range of D50 (what a correlation across samples needs)."""

    size: int = 128
    um_per_px: float = 1.0
    distribution: Literal["lognormal", "bimodal"] = "lognormal"
    d50_um: float = 14.0
    d50_range: tuple[float, float] | None = None  # per image: median log-uniform in the range
    sigma: float = 0.25
    mode_ratio: float = 1.8
    mode_share: float = 0.3
    min_d_um: float = 7.0  # smaller particles are not drawn (the segmenter needs an interior)
    max_d_um: float = 40.0
    count: tuple[int, int] = (12, 30)  # particles per image, uniform in [lo, hi]
    max_aspect: float = 2.5
    touch: float = 0.35  # share of particles placed touching / overlapping another
    illumination: float = 0.25  # amplitude of the uneven background
    blur: float = 0.8  # Gaussian sigma, pixels
    noise: float = 0.03  # Gaussian noise sd, of full scale


@dataclass
class Micrograph:
    """One image (uint8, H×W) and its truth: instance labels (0 = background), the drawn ECDs
    (µm, in label order 1..n), aspect ratios, the calibration and the distribution."""

    image: np.ndarray
    labels: np.ndarray
    ecd_um: np.ndarray
    aspect: np.ndarray
    um_per_px: float
    stats: dict[str, float] = field(default_factory=dict)


def draw_diameters(cfg: MicrographConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` ECDs (µm) from the configured distribution, clipped to [min_d_um, max_d_um]."""
    d50 = cfg.d50_um
    if cfg.d50_range is not None:
        d50 = float(np.exp(rng.uniform(*np.log(cfg.d50_range))))
    median = np.full(n, d50)
    if cfg.distribution == "bimodal":
        median = np.where(rng.random(n) < cfg.mode_share, d50 * cfg.mode_ratio, median)
    d = median * np.exp(rng.normal(0.0, cfg.sigma, n))
    return np.clip(d, cfg.min_d_um, cfg.max_d_um)


def _ellipse(shape: tuple[int, int], cy: float, cx: float, a: float, b: float, theta: float
             ) -> np.ndarray:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def _place(cfg: MicrographConfig, radii: np.ndarray, rng: np.random.Generator
           ) -> list[tuple[float, float]]:
    """Centres inside the frame: most particles apart, a ``touch`` share set against an
    earlier one (centre distance 0.85–1.0 × the sum of their radii: touching or overlapping a
    little). A particle that finds no place after many tries is dropped (returned short)."""
    s, centres = cfg.size, []
    for r in radii:
        for _ in range(200):
            if centres and rng.random() < cfg.touch:
                j = int(rng.integers(len(centres)))
                angle = rng.uniform(0, 2 * np.pi)
                dist = (r + radii[j]) * rng.uniform(0.85, 1.0)
                cy, cx = centres[j][0] + dist * np.sin(angle), centres[j][1] + dist * np.cos(angle)
                gap = 0.8
            else:
                cy, cx = rng.uniform(r + 1, s - r - 1, 2)
                gap = 1.05
            if not (r + 1 <= cy <= s - r - 1 and r + 1 <= cx <= s - r - 1):
                continue
            if all(np.hypot(cy - c[0], cx - c[1]) >= gap * (r + radii[k])
                   for k, c in enumerate(centres)):
                centres.append((float(cy), float(cx)))
                break
        else:
            return centres  # crowded: stop here
    return centres


def generate(cfg: MicrographConfig, seed: int) -> Micrograph:
    """One micrograph from ``seed`` (the same seed and config give the same image)."""
    rng = np.random.default_rng(seed)
    s = cfg.size
    n = int(rng.integers(cfg.count[0], cfg.count[1] + 1))
    d_um = np.sort(draw_diameters(cfg, n, rng))[::-1]  # large first: small ones fill gaps
    r_px = d_um / 2 / cfg.um_per_px
    aspect = rng.uniform(1.0, cfg.max_aspect, n)
    # the enclosing radius of the ellipse of area π r², aspect ar, is r √ar; placement uses a
    # blend so elongated particles may lie closer side by side
    centres = _place(cfg, r_px * np.sqrt(aspect) ** 0.5, rng)
    n = len(centres)
    d_um, r_px, aspect = d_um[:n], r_px[:n], aspect[:n]
    labels = np.zeros((s, s), np.int32)
    for k, ((cy, cx), r, ar) in enumerate(zip(centres, r_px, aspect, strict=True)):
        inside = _ellipse((s, s), cy, cx, r * np.sqrt(ar), r / np.sqrt(ar),
                          rng.uniform(0, np.pi))
        labels[inside] = k + 1  # a later particle lies on top of an earlier one
    image = _render(cfg, labels, rng)
    return Micrograph(image, labels, d_um, aspect, cfg.um_per_px, distribution(d_um))


def _render(cfg: MicrographConfig, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bright-field look: dark particles with a darker rim on a bright, unevenly lit field."""
    s = cfg.size
    yy, xx = np.mgrid[0:s, 0:s] / s
    cy, cx = rng.uniform(-0.3, 1.3, 2)
    light = 0.72 + cfg.illumination * (0.5 - np.hypot(yy - cy, xx - cx)) \
        + rng.uniform(-0.1, 0.1) * (xx - 0.5)
    shade = np.concatenate([[0.0], rng.uniform(0.25, 0.4, labels.max())])
    img = light * (1.0 - shade[labels])
    img = np.where(boundary_of(labels), img * 0.55, img)
    from scipy import ndimage  # workstation side only; imported late: configs load fast

    img = ndimage.gaussian_filter(img, cfg.blur) if cfg.blur > 0 else img
    img = img + rng.normal(0.0, cfg.noise, img.shape)
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


def classes(labels: np.ndarray, core_px: float = 0.0) -> np.ndarray:
    """The segmenter's target: 0 background, 1 interior, 2 boundary (an instance pixel with a
    4-neighbour of another label or background), so touching particles stay apart; with
    ``core_px`` > 0 also 3, core: interior pixels at least ``core_px`` from the particle's
    edge (or, for a particle too small for that, at least half its own deepest distance), so
    touching particles have cores apart by a margin even where the boundary is faint."""
    edge = boundary_of(labels)
    out = np.where(labels == 0, 0, np.where(edge, 2, 1)).astype(np.uint8)
    if core_px > 0 and labels.max() > 0:
        out[core_of(labels, edge, core_px)] = 3
    return out


def core_of(labels: np.ndarray, edge: np.ndarray, core_px: float) -> np.ndarray:
    """Interior pixels at least min(``core_px``, half the particle's deepest) from its edge."""
    from scipy import ndimage

    inner = (labels > 0) & ~edge
    depth = ndimage.distance_transform_edt(inner)
    deepest = np.zeros(labels.max() + 1)
    np.maximum.at(deepest, labels[inner], depth[inner])
    need = np.minimum(core_px, 0.5 * deepest)
    return inner & (depth >= need[labels])


def generate_set(cfg: MicrographConfig, n: int, seed: int) -> list[Micrograph]:
    """``n`` micrographs, image i from seed (seed, i)."""
    return [generate(cfg, int(np.random.SeedSequence([seed, i]).generate_state(1)[0]))
            for i in range(n)]
