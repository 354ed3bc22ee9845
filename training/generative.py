"""Generative families over tag windows (L × F), conditioned on a class (operating mode or
fault class, one-hot): ``cvae`` (conditional VAE) and ``wgan_gp`` (Wasserstein GAN with
gradient penalty). Both train in an explicit loop of ``tf.function`` steps, seeded: the
weights by ``keras.utils.set_random_seed``, the batches and the noise by the seed given to
``fit``, so the same data and seed give the same generator.

What both share is a :class:`WindowGenerator`: a functional ``generator`` model from
``[z | one-hot class]`` to a window of scaled values, ``sample(classes, seed)`` and the loss
history of the fit. A CVAE's decoder is Gaussian with a learned standard deviation per tag:
sampling adds noise to the decoded mean (the mean alone is smoother than any real window): per
tag, the residuals' standard deviation and lag-1 autocorrelation after the fit, as AR(1) noise
(process residuals are correlated in time; white noise is the tell of a synthetic window).
With ``hold_steps`` learned (:meth:`WindowGenerator.learn_sampling`), sampled-and-held tags
are then held between their sampling instants as the real sensor holds them
(:mod:`training.sample_hold`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from training import sample_hold
from training.progress import progress
from training.registry import register

GENERATOR_FILE = "generator.keras"
META_FILE = "generative.json"


class WindowGenerator:
    """A trained (or freshly built) generator of windows for ``n_classes`` classes."""

    def __init__(self, family: str, generator: keras.Model, window: int, features: int,
                 n_classes: int, latent_dim: int, noise_std: np.ndarray | None = None,
                 noise_phi: np.ndarray | None = None, hold_steps: np.ndarray | None = None):
        self.family, self.generator = family, generator
        self.window, self.features = window, features
        self.n_classes, self.latent_dim = n_classes, latent_dim
        self.noise_std = (np.zeros(features, np.float32) if noise_std is None
                          else np.asarray(noise_std, np.float32))
        self.noise_phi = (np.zeros(features, np.float32) if noise_phi is None
                          else np.asarray(noise_phi, np.float32))
        self.hold_steps = (np.ones(features, np.int64) if hold_steps is None
                           else np.asarray(hold_steps, np.int64))
        self.noise_acf: np.ndarray | None = None  # (L − 1, F) residual autocorrelation, lag 1…
        self.history: dict[str, list[float]] = {}

    def learn_sampling(self, x: np.ndarray) -> np.ndarray:
        """Learn from training windows ``x`` which tags are sampled and held, and how often
        (:func:`training.sample_hold.detect`); :meth:`sample` holds them from now on.
        A held tag's residuals are staircases, so their lag-1 autocorrelation says nothing
        of the noise between two samples; with the residuals' autocorrelation at lag k
        known (a fitted CVAE), the tag's AR(1) coefficient becomes its k-th root, so that
        the noise at two sampling instants k steps apart correlates as the data's does."""
        self.hold_steps = sample_hold.detect(x)
        if self.noise_acf is not None:
            for tag in np.flatnonzero(self.hold_steps > 1):
                k = int(self.hold_steps[tag])
                rho = float(np.clip(self.noise_acf[k - 1, tag], 0.0, 0.99))
                self.noise_phi[tag] = rho ** (1.0 / k)
        return self.hold_steps

    def inputs(self, classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Generator inputs ``[z | one-hot]`` for class indices ``classes``."""
        z = rng.standard_normal((len(classes), self.latent_dim)).astype(np.float32)
        onehot = np.eye(self.n_classes, dtype=np.float32)[np.asarray(classes, int)]
        return np.concatenate([z, onehot], axis=1)

    def sample(self, classes: np.ndarray, seed: int = 0) -> np.ndarray:
        """Windows (n, L, F), scaled, one per class index in ``classes``; the same seed gives
        the same windows. Tags with a hold length > 1 are held between sampling instants
        (random phase per window), after the noise: the held value is the sampled one."""
        rng = np.random.default_rng(seed)
        mean = self.generator.predict(self.inputs(classes, rng), verbose=0, batch_size=256)
        eps = rng.standard_normal(mean.shape).astype(np.float32)
        phi, innovation = self.noise_phi, np.sqrt(1.0 - self.noise_phi ** 2)
        noise = np.empty_like(eps)
        noise[:, 0] = eps[:, 0]
        for t in range(1, mean.shape[1]):  # AR(1) with unit variance, then scaled per tag
            noise[:, t] = phi * noise[:, t - 1] + innovation * eps[:, t]
        out = (mean + noise * self.noise_std).astype(np.float32)
        if (self.hold_steps > 1).any():  # draws after the noise: without holds, as before
            out = sample_hold.hold(out, self.hold_steps, rng)
        return out

    def fit(self, x: np.ndarray, classes: np.ndarray, steps: int, batch_size: int, seed: int,
            settings: dict, desc: str = "generative") -> dict[str, list[float]]:
        raise NotImplementedError

    def save(self, run_dir: Path, extra: dict | None = None) -> None:
        self.generator.save(Path(run_dir) / GENERATOR_FILE)
        meta = {"family": self.family, "window": self.window, "features": self.features,
                "n_classes": self.n_classes, "latent_dim": self.latent_dim,
                "noise_std": [float(v) for v in self.noise_std],
                "noise_phi": [float(v) for v in self.noise_phi],
                "hold_steps": [int(v) for v in self.hold_steps]} | (extra or {})
        (Path(run_dir) / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def load_generator(run_dir: Path) -> tuple[WindowGenerator, dict]:
    """The generator of a run directory and its ``generative.json``."""
    meta = json.loads((Path(run_dir) / META_FILE).read_text())
    model = keras.models.load_model(Path(run_dir) / GENERATOR_FILE, compile=False)
    gen = WindowGenerator(meta["family"], model, meta["window"], meta["features"],
                          meta["n_classes"], meta["latent_dim"], np.asarray(meta["noise_std"]),
                          np.asarray(meta.get("noise_phi", np.zeros(meta["features"]))),
                          meta.get("hold_steps"))
    return gen, meta


def latent_line(encoder: keras.Model, decoder: keras.Model, latent_dim: int, n_classes: int,
                a: np.ndarray, b: np.ndarray, cls: int, steps: int) -> np.ndarray:
    """A conditional VAE's decoded means along the straight line between the latent means of
    samples ``a`` and ``b`` (both of class ``cls``): ``steps`` samples, first ≈ a, last ≈ b.
    Shared by the window and the image CVAE (their encoders take ``[x, one-hot]`` alike)."""
    onehot = np.eye(n_classes, dtype=np.float32)[[cls, cls]]
    mu = encoder.predict([np.stack([a, b]), onehot], verbose=0)[:, :latent_dim]
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    z = (1 - t) * mu[0] + t * mu[1]
    return decoder.predict(np.concatenate([z, np.repeat(onehot[:1], steps, 0)], 1),
                           verbose=0)


def _decoder(window: int, features: int, cond_dim: int, filters: int, name: str
             ) -> keras.Model:
    """``[z | one-hot]`` → (L, F): a dense projection to (L, filters), two 1-D convolutions
    over time, a linear 1×1 convolution to the tags (shared by both families)."""
    inp = keras.Input((cond_dim,))
    h = keras.layers.Dense(window * filters, activation="relu")(inp)
    h = keras.layers.Reshape((window, filters))(h)
    h = keras.layers.Conv1D(filters, 5, padding="same", activation="relu")(h)
    h = keras.layers.Conv1D(filters, 5, padding="same", activation="relu")(h)
    out = keras.layers.Conv1D(features, 1)(h)
    return keras.Model(inp, out, name=name)


def _window_encoder(window: int, features: int, n_classes: int, filters: int, outputs: int,
                    name: str, negative_slope: float = 0.0) -> keras.Model:
    """(window, one-hot) → ``outputs`` values: the class is broadcast over time as extra
    channels, two strided 1-D convolutions, a dense head (the CVAE's encoder, the critic)."""
    x_in, c_in = keras.Input((window, features)), keras.Input((n_classes,))
    c = keras.layers.RepeatVector(window)(c_in)
    h = keras.layers.Concatenate()([x_in, c])
    act = "relu" if negative_slope == 0 else None
    for _ in range(2):
        h = keras.layers.Conv1D(filters, 5, strides=2, padding="same", activation=act)(h)
        if act is None:
            h = keras.layers.LeakyReLU(negative_slope)(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Concatenate()([h, c_in])
    out = keras.layers.Dense(outputs)(h)
    return keras.Model([x_in, c_in], out, name=name)


def _batches(n: int, batch_size: int, rng: np.random.Generator, steps: int):
    """``steps`` index batches drawn without replacement within each pass over the data."""
    order, at = rng.permutation(n), 0
    for _ in range(steps):
        if at + batch_size > n:
            order, at = rng.permutation(n), 0
        yield order[at:at + min(batch_size, n)]
        at += batch_size


def _record(history: dict[str, list[float]], values: dict[str, float], desc: str, done: int,
            steps: int) -> None:
    """Append one step's losses to ``history``. A loss that is not finite ends the fit with
    an error: the weights after it are NaN, and samples of NaN weights score as a plausible
    looking precision of 0, not as the failure they are."""
    for key, value in values.items():
        history[key].append(value)
    if not all(math.isfinite(v) for v in values.values()):
        shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items())
        raise RuntimeError(f"{desc}: training diverged at step {done} of {steps} ({shown}); "
                           "nothing it would generate is usable: fit again with a lower "
                           "learning rate or fewer steps")


def _draws(n: int, batch_size: int, rng: np.random.Generator, steps: int,
           draw_p: np.ndarray | None):
    """``_batches``, or with ``draw_p`` each batch drawn with replacement by those odds."""
    if draw_p is None:
        yield from _batches(n, batch_size, rng, steps)
        return
    for _ in range(steps):
        yield np.sort(rng.choice(n, size=batch_size, p=draw_p))


def fit_steps(step, x: np.ndarray, onehot: np.ndarray, steps: int, batch_size: int,
              seed: int, desc: str, keys: tuple[str, ...],
              draw_p: np.ndarray | None = None) -> dict[str, list[float]]:
    """Run ``step(x_batch, onehot_batch)`` ``steps`` times with progress output; its outputs
    per key, per step. Stops with an error at the first loss that is not finite."""
    history: dict[str, list[float]] = {k: [] for k in keys}
    rng = np.random.default_rng(seed)
    for done, idx in enumerate(progress(_draws(len(x), batch_size, rng, steps, draw_p), desc,
                                        total=steps, unit="step"), 1):
        values = step(tf.constant(x[idx]), tf.constant(onehot[idx]))
        _record(history, {k: float(v) for k, v in zip(keys, values, strict=True)}, desc,
                done, steps)
    return history


def cvae_step(encoder: keras.Model, decoder: keras.Model, log_std: tf.Variable,
              latent_dim: int, seed: int, settings: dict):
    """One optimizer step of a conditional VAE, ``step(x_batch, onehot_batch) → (mean NLL,
    mean KL)``, shared by the window and the image CVAE: Gaussian negative log-likelihood
    with standard deviation exp(``log_std``) (one per tag, or one for all pixels: it
    broadcasts) summed over every non-batch axis, + ``beta`` · KL(q(z|x,c) ‖ N(0, I)), z by
    the reparameterisation with noise seeded by ``seed``; Adam (``learning_rate``, 1e-3)."""
    opt = keras.optimizers.Adam(settings.get("learning_rate") or 1e-3)
    beta = float(settings.get("beta", 1.0))
    noise = tf.random.Generator.from_seed(seed)
    variables = [*encoder.trainable_weights, *decoder.trainable_weights, log_std]
    opt.build(variables)  # its slots exist before the step is traced (one trace, not two)

    @tf.function
    def step(xb, cb):
        with tf.GradientTape() as tape:
            stats = encoder([xb, cb], training=True)
            mu, logvar = stats[:, :latent_dim], stats[:, latent_dim:]
            z = mu + tf.exp(0.5 * logvar) * noise.normal(tf.shape(mu))
            mean = decoder(tf.concat([z, cb], axis=1), training=True)
            nll = tf.reduce_sum(0.5 * tf.square((xb - mean) / tf.exp(log_std)) + log_std,
                                axis=list(range(1, xb.shape.rank)))
            kl = -0.5 * tf.reduce_sum(1 + logvar - tf.square(mu) - tf.exp(logvar), axis=1)
            loss = tf.reduce_mean(nll + beta * kl)
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return tf.reduce_mean(nll), tf.reduce_mean(kl)

    return step


class CVAE(WindowGenerator):
    """Conditional VAE: q(z | x, c) = N(mu, sigma²) by the encoder, p(x | z, c) =
    N(decoder(z, c), s²) with one learned s per tag; loss = Gaussian negative log-likelihood
    + beta · KL(q ‖ N(0, I)), by the reparameterisation z = mu + sigma·eps."""

    def __init__(self, window: int, features: int, n_classes: int, latent_dim: int = 8,
                 filters: int = 32):
        decoder = _decoder(window, features, latent_dim + n_classes, filters, "cvae_decoder")
        super().__init__("cvae", decoder, window, features, n_classes, latent_dim)
        self.encoder = _window_encoder(window, features, n_classes, filters, 2 * latent_dim,
                                       "cvae_encoder")
        self.log_std = tf.Variable(tf.zeros(features), name="log_std")

    def fit(self, x, classes, steps, batch_size, seed, settings, desc="cvae"):
        step = cvae_step(self.encoder, self.generator, self.log_std, self.latent_dim, seed,
                         settings)
        onehot = np.eye(self.n_classes, dtype=np.float32)[classes]
        history = fit_steps(step, x, onehot, steps, batch_size, seed, desc, ("nll", "kl"))
        self.noise_std, self.noise_phi = self.residual_noise(x, onehot)
        self.history = history
        return history

    def interpolate(self, a: np.ndarray, b: np.ndarray, cls: int, steps: int = 7
                    ) -> np.ndarray:
        """Decoded means along the straight line between the latent means of windows ``a``
        and ``b`` (both of class ``cls``): (steps, L, F), scaled; first ≈ a, last ≈ b."""
        return latent_line(self.encoder, self.generator, self.latent_dim, self.n_classes,
                           a, b, cls, steps)

    def residual_noise(self, x: np.ndarray, onehot: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Per tag, the RMS of r = x − decoder(mu(x), c) over the training windows (the
        maximum-likelihood s of the fitted decoder: the learned log s moves at Adam's pace,
        too slowly to be trusted after a short fit) and r's lag-1 autocorrelation within
        windows, clipped to [0, 0.99]."""
        stats = self.encoder.predict([x, onehot], verbose=0, batch_size=256)
        z = stats[:, :self.latent_dim]
        mean = self.generator.predict(np.concatenate([z, onehot], axis=1), verbose=0,
                                      batch_size=256)
        r = x - mean
        std = np.sqrt(np.mean(np.square(r), axis=(0, 1)))
        self.noise_acf = np.stack([np.mean(r[:, j:] * r[:, :-j], axis=(0, 1))
                                   for j in range(1, x.shape[1])]) / np.maximum(std ** 2, 1e-12)
        lag = self.noise_acf[0]
        return std.astype(np.float32), np.clip(lag, 0.0, 0.99).astype(np.float32)


class WGANGP(WindowGenerator):
    """Conditional WGAN-GP (Gulrajani et al. 2017): the critic scores (window, class), the
    loss is E[critic(fake)] − E[critic(real)] + λ·E[(‖∇critic(x̂)‖ − 1)²] on random
    interpolates x̂; ``n_critic`` critic steps per generator step, Adam(1e-4, 0.0, 0.9)."""

    def __init__(self, window: int, features: int, n_classes: int, latent_dim: int = 8,
                 filters: int = 32):
        gen = _decoder(window, features, latent_dim + n_classes, filters, "wgan_generator")
        super().__init__("wgan_gp", gen, window, features, n_classes, latent_dim)
        self.critic = _window_encoder(window, features, n_classes, filters, 1, "wgan_critic",
                                      negative_slope=0.2)

    def fit(self, x, classes, steps, batch_size, seed, settings, desc="wgan_gp"):
        lr = settings.get("learning_rate") or 1e-4
        g_opt = keras.optimizers.Adam(lr, beta_1=0.0, beta_2=0.9)
        c_opt = keras.optimizers.Adam(lr, beta_1=0.0, beta_2=0.9)
        n_critic, lam = int(settings.get("n_critic", 5)), float(settings.get("gp_weight", 10.0))
        noise = tf.random.Generator.from_seed(seed)
        onehot = np.eye(self.n_classes, dtype=np.float32)[classes]
        latent, critic, gen = self.latent_dim, self.critic, self.generator
        c_opt.build(critic.trainable_weights)  # slots before tracing: one trace per step
        g_opt.build(gen.trainable_weights)

        def fake(cb):
            z = noise.normal((tf.shape(cb)[0], latent))
            return gen(tf.concat([z, cb], axis=1), training=True)

        @tf.function
        def critic_step(xb, cb):
            with tf.GradientTape() as tape:
                xf = fake(cb)
                eps = noise.uniform((tf.shape(xb)[0], 1, 1))
                mixed = eps * xb + (1 - eps) * xf
                with tf.GradientTape() as inner:
                    inner.watch(mixed)
                    mixed_score = critic([mixed, cb], training=True)
                grad = inner.gradient(mixed_score, mixed)
                norm = tf.sqrt(tf.reduce_sum(tf.square(grad), axis=[1, 2]) + 1e-12)
                gp = tf.reduce_mean(tf.square(norm - 1.0))
                distance = (tf.reduce_mean(critic([xb, cb], training=True))
                            - tf.reduce_mean(critic([xf, cb], training=True)))
                loss = -distance + lam * gp
            c_opt.apply_gradients(zip(tape.gradient(loss, critic.trainable_weights),
                                      critic.trainable_weights, strict=True))
            return distance, gp

        @tf.function
        def generator_step(cb):
            with tf.GradientTape() as tape:
                loss = -tf.reduce_mean(critic([fake(cb), cb], training=True))
            g_opt.apply_gradients(zip(tape.gradient(loss, gen.trainable_weights),
                                      gen.trainable_weights, strict=True))
            return loss

        history = {"wasserstein": [], "gradient_penalty": [], "generator": []}
        rng = np.random.default_rng(seed)
        batches = _batches(len(x), batch_size, rng, steps * (n_critic + 1))
        for done in progress(range(1, steps + 1), desc, total=steps, unit="step"):
            for _ in range(n_critic):
                idx = next(batches)
                distance, gp = critic_step(tf.constant(x[idx]), tf.constant(onehot[idx]))
            idx = next(batches)
            g = generator_step(tf.constant(onehot[idx]))
            _record(history, {"wasserstein": float(distance), "gradient_penalty": float(gp),
                                  "generator": float(g)}, desc, done, steps)
        self.history = history
        return history


@register("generative", "cvae", small={"latent_dim": 4, "filters": 8})
def cvae(window: int, features: int, n_classes: int, latent_dim: int = 8,
         filters: int = 32) -> CVAE:
    """Conditional VAE over windows: 1-D conv encoder and decoder, Gaussian likelihood."""
    return CVAE(window, features, n_classes, latent_dim, filters)


@register("generative", "wgan_gp", small={"latent_dim": 4, "filters": 8})
def wgan_gp(window: int, features: int, n_classes: int, latent_dim: int = 8,
            filters: int = 32) -> WGANGP:
    """Conditional WGAN-GP over windows: 1-D conv generator and critic, λ = 10, n_critic = 5."""
    return WGANGP(window, features, n_classes, latent_dim, filters)
