"""Image generative families for task ``generative`` (with an ``image`` section): ``dcgan``
(Radford et al. 2016: transposed-convolution generator, strided-convolution discriminator,
class-conditional) and ``image_cvae`` (conditional VAE, Kingma et al. 2014 / Sohn et al.
2015) over square grey images in [-1, 1] (pixel / 127.5 − 1).

Both generators map ``[z | one-hot class]`` to an image through the same stack: a dense
projection to 4×4, then transposed convolutions of stride 2 (each halving the width) up to
the side, a tanh. Training is an explicit loop of ``tf.function`` steps, seeded as the
window families are (:mod:`training.generative`): the weights by
``keras.utils.set_random_seed``, the batches and the noise by the seed given to ``fit``.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from training.config import (
    CVAE_SAMPLINGS,
    CVAE_TEXTURES,
    IMAGE_GENERATORS,
    check_cvae_sampling,
    check_cvae_texture,
)
from training.generative import GENERATOR_FILE, META_FILE, cvae_step, fit_steps, latent_line
from training.images.texture import ResidualTexture
from training.registry import register

IMAGE_FAMILIES = IMAGE_GENERATORS


def _ups(size: int) -> int:
    """Transposed convolutions from 4×4 to ``size`` (a power of two, at least 8)."""
    n = int(np.log2(size / 4)) if size >= 8 else 0
    if size < 8 or 4 * 2 ** n != size:
        raise ValueError(f"image size {size}: a generator needs a power of two ≥ 8")
    return n


def image_decoder(size: int, channels: int, cond_dim: int, filters: int, name: str,
                  batch_norm: bool) -> keras.Model:
    """``[z | one-hot]`` → (size, size, channels) in [-1, 1]."""
    n = _ups(size)
    inp = keras.Input((cond_dim,))
    h = layers.Dense(4 * 4 * filters * 2 ** (n - 1))(inp)
    h = layers.Reshape((4, 4, filters * 2 ** (n - 1)))(h)
    for i in range(n - 1):
        h = layers.Conv2DTranspose(filters * 2 ** (n - 2 - i), 4, strides=2, padding="same",
                                   use_bias=not batch_norm)(h)
        if batch_norm:
            h = layers.BatchNormalization(momentum=0.9)(h)
        h = layers.ReLU()(h)
    out = layers.Conv2DTranspose(channels, 4, strides=2, padding="same",
                                 activation="tanh", dtype="float32")(h)
    return keras.Model(inp, out, name=name)


def image_encoder(size: int, channels: int, n_classes: int, filters: int, outputs: int,
                  name: str) -> keras.Model:
    """(image, one-hot) → ``outputs`` values: the class broadcast as extra channels, strided
    convolutions with leaky ReLU down to 4×4, a dense head (the discriminator, the encoder)."""
    x_in, c_in = keras.Input((size, size, channels)), keras.Input((n_classes,))
    c = layers.Reshape((1, 1, n_classes))(c_in)
    c = layers.UpSampling2D(size)(c)
    h = layers.Concatenate()([x_in, c])
    for i in range(_ups(size)):
        h = layers.Conv2D(filters * 2 ** i, 4, strides=2, padding="same")(h)
        h = layers.LeakyReLU(0.2)(h)
    h = layers.Flatten()(h)
    h = layers.Concatenate()([h, c_in])
    return keras.Model([x_in, c_in], layers.Dense(outputs)(h), name=name)


class ClassGaussians:
    """One Gaussian per class over a CVAE's latent means of its training images: the ex-post
    density of Ghosh et al. (ICLR 2020), conditioned on the class. A VAE whose likelihood
    sums over many pixels leaves its encodings far from N(0, I); decoding prior draws then
    gives images unlike any real one (at 128 px: smooth mid-grey tiles). Drawing z where the
    training images' codes lie instead keeps samples on the data. Covariances are shrunk
    (Ledoit–Wolf): a class holds a few dozen images for 32 latent dimensions."""

    def __init__(self, means: np.ndarray, chols: np.ndarray):
        self.means = np.asarray(means, np.float32)  # (classes, d)
        self.chols = np.asarray(chols, np.float32)  # (classes, d, d), lower triangular

    @classmethod
    def fit(cls, codes: np.ndarray, classes: np.ndarray, n_classes: int) -> ClassGaussians:
        """Per class the mean and shrunk covariance of ``codes``; a class with fewer than
        two codes keeps N(mean, I) (or N(0, I) with none)."""
        from sklearn.covariance import LedoitWolf

        d = codes.shape[1]
        means, chols = np.zeros((n_classes, d)), np.repeat(np.eye(d)[None], n_classes, 0)
        for k in range(n_classes):
            own = np.asarray(codes[classes == k], np.float64)
            if len(own):
                means[k] = own.mean(0)
            if len(own) >= 2:
                cov = LedoitWolf().fit(own).covariance_
                chols[k] = np.linalg.cholesky(cov + 1e-6 * np.eye(d))
        return cls(means, chols)

    def transform(self, eps: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """Standard-normal draws ``eps`` (n, d) → draws of each row's class Gaussian."""
        return (self.means[classes] + np.einsum("nij,nj->ni", self.chols[classes], eps)
                ).astype(np.float32)

    def to_dict(self) -> dict:
        return {"kind": "class_gaussians", "means": self.means.tolist(),
                "chols": self.chols.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> ClassGaussians:
        if d.get("kind") != "class_gaussians":
            raise ValueError(f"unknown latent density {d.get('kind')!r} in generative.json")
        return cls(np.array(d["means"]), np.array(d["chols"]))


class ImageGenerator:
    """A trained (or freshly built) class-conditional generator of square images."""

    kind = "image"

    def __init__(self, family: str, generator: keras.Model, size: int, channels: int,
                 n_classes: int, latent_dim: int):
        self.family, self.generator = family, generator
        self.size, self.channels = size, channels
        self.n_classes, self.latent_dim = n_classes, latent_dim
        self.history: dict[str, list[float]] = {}
        self.latent_density: ClassGaussians | None = None  # None: z ~ N(0, I)
        self.texture: ResidualTexture | None = None  # None: the decoded images as they are

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.size, self.size, self.channels

    def inputs(self, classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        classes = np.asarray(classes, int)
        z = rng.standard_normal((len(classes), self.latent_dim)).astype(np.float32)
        if self.latent_density is not None:
            z = self.latent_density.transform(z, classes)
        onehot = np.eye(self.n_classes, dtype=np.float32)[classes]
        return np.concatenate([z, onehot], axis=1)

    def sample(self, classes: np.ndarray, seed: int = 0) -> np.ndarray:
        """Images (n, size, size, channels) in [-1, 1], one per class index; same seed, same
        images (inference mode: batch normalisation uses its moving statistics)."""
        rng = np.random.default_rng(seed)
        images = self.generator.predict(self.inputs(classes, rng), verbose=0,
                                        batch_size=256).astype(np.float32)
        if self.texture is None:
            return images
        return np.clip(images + self.texture.sample(classes, rng), -1.0, 1.0)

    def fit(self, x: np.ndarray, classes: np.ndarray, steps: int, batch_size: int, seed: int,
            settings: dict, desc: str = "generative", draw_p: np.ndarray | None = None
            ) -> dict[str, list[float]]:
        """Fit for ``steps`` batches; ``draw_p``: each image's probability of being drawn
        (with replacement; default: passes without replacement)."""
        raise NotImplementedError

    def save(self, run_dir: Path, extra: dict | None = None) -> None:
        self.generator.save(Path(run_dir) / GENERATOR_FILE)
        meta = {"kind": "image", "family": self.family, "size": self.size,
                "channels": self.channels, "n_classes": self.n_classes,
                "latent_dim": self.latent_dim} | (extra or {})
        if self.latent_density is not None:
            meta["latent_density"] = self.latent_density.to_dict()
        if self.texture is not None:
            meta["texture"] = self.texture.save(run_dir)
        (Path(run_dir) / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def load_image_generator(run_dir: Path) -> tuple[ImageGenerator, dict]:
    """The image generator of a run directory and its ``generative.json``."""
    meta = json.loads((Path(run_dir) / META_FILE).read_text())
    model = keras.models.load_model(Path(run_dir) / GENERATOR_FILE, compile=False)
    gen = ImageGenerator(meta["family"], model, meta["size"], meta["channels"],
                         meta["n_classes"], meta["latent_dim"])
    if "latent_density" in meta:
        gen.latent_density = ClassGaussians.from_dict(meta["latent_density"])
    if "texture" in meta:
        gen.texture = ResidualTexture.load(run_dir, meta["texture"])
    return gen, meta


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[-1, 1] → 8-bit grey levels."""
    return np.clip(np.round((np.asarray(images) + 1.0) * 127.5), 0, 255).astype(np.uint8)


class DCGAN(ImageGenerator):
    """Conditional DCGAN: non-saturating GAN loss, one discriminator and one generator step
    per batch, Adam(2e-4, β1 = 0.5) as in the paper; the discriminator's real targets are
    smoothed to 0.9 (Salimans et al. 2016), which keeps it from overpowering the generator
    on the few hundred tiles there are."""

    def __init__(self, size: int, channels: int, n_classes: int, latent_dim: int = 32,
                 filters: int = 32, batch_norm: bool = True):
        gen = image_decoder(size, channels, latent_dim + n_classes, filters, "dcgan_generator",
                            batch_norm)
        super().__init__("dcgan", gen, size, channels, n_classes, latent_dim)
        self.discriminator = image_encoder(size, channels, n_classes, filters, 1,
                                           "dcgan_discriminator")

    def fit(self, x, classes, steps, batch_size, seed, settings, desc="dcgan", draw_p=None):
        lr = settings.get("learning_rate") or 2e-4
        g_opt, d_opt = (keras.optimizers.Adam(lr, beta_1=0.5) for _ in range(2))
        gen, disc, latent = self.generator, self.discriminator, self.latent_dim
        g_opt.build(gen.trainable_weights)  # slots before tracing: one trace per step
        d_opt.build(disc.trainable_weights)
        noise = tf.random.Generator.from_seed(seed)
        bce = keras.losses.BinaryCrossentropy(from_logits=True)
        onehot = np.eye(self.n_classes, dtype=np.float32)[classes]

        @tf.function
        def step(xb, cb):
            z = noise.normal((tf.shape(cb)[0], latent))
            with tf.GradientTape() as d_tape, tf.GradientTape() as g_tape:
                fake = gen(tf.concat([z, cb], axis=1), training=True)
                real_logit = disc([xb, cb], training=True)
                fake_logit = disc([fake, cb], training=True)
                d_loss = (bce(0.9 * tf.ones_like(real_logit), real_logit)
                          + bce(tf.zeros_like(fake_logit), fake_logit))
                g_loss = bce(tf.ones_like(fake_logit), fake_logit)
            d_opt.apply_gradients(zip(d_tape.gradient(d_loss, disc.trainable_weights),
                                      disc.trainable_weights, strict=True))
            g_opt.apply_gradients(zip(g_tape.gradient(g_loss, gen.trainable_weights),
                                      gen.trainable_weights, strict=True))
            return d_loss, g_loss

        self.history = fit_steps(step, x, onehot, steps, batch_size, seed, desc,
                             ("discriminator", "generator"), draw_p)
        return self.history


class ImageCVAE(ImageGenerator):
    """Conditional VAE: q(z | x, c) by the convolutional encoder, p(x | z, c) Gaussian around
    the decoder's image with one learned standard deviation s; loss = NLL + β·KL. Samples are
    the decoded means (pixel noise of size s would add only grain, not texture) of z drawn
    from the prior N(0, I) (``sampling: prior``) or from :class:`ClassGaussians` fitted
    to the training images' codes after the fit (``sampling: posterior``); with ``texture:
    spectrum`` (or ``exemplar``) plus a :class:`~training.images.texture.ResidualTexture`
    field fitted to what the decoder misses on the training images (per class, or per tile)."""

    def __init__(self, size: int, channels: int, n_classes: int, latent_dim: int = 32,
                 filters: int = 32, sampling: str = CVAE_SAMPLINGS[0],
                 texture: str = CVAE_TEXTURES[0]):
        check_cvae_sampling(sampling)
        check_cvae_texture(texture)
        dec = image_decoder(size, channels, latent_dim + n_classes, filters, "cvae_decoder",
                            batch_norm=False)
        super().__init__("image_cvae", dec, size, channels, n_classes, latent_dim)
        self.encoder = image_encoder(size, channels, n_classes, filters, 2 * latent_dim,
                                     "cvae_encoder")
        self.log_std = tf.Variable(np.log(0.2), dtype=tf.float32, name="log_std")
        self.sampling, self.texture_kind = sampling, texture

    def fit(self, x, classes, steps, batch_size, seed, settings, desc="image_cvae",
            draw_p=None):
        step = cvae_step(self.encoder, self.generator, self.log_std, self.latent_dim, seed,
                         settings)
        onehot = np.eye(self.n_classes, dtype=np.float32)[classes]
        self.history = fit_steps(step, x, onehot, steps, batch_size, seed, desc, ("nll", "kl"),
                             draw_p)
        if self.sampling == "prior" and self.texture_kind == "none":
            return self.history
        codes = self.encoder.predict([x, onehot], verbose=0, batch_size=64)
        codes, classes = codes[:, :self.latent_dim], np.asarray(classes, int)
        if self.sampling == "posterior":
            self.latent_density = ClassGaussians.fit(codes, classes, self.n_classes)
        if self.texture_kind != "none":
            decoded = self.generator.predict(np.concatenate([codes, onehot], axis=1),
                                             verbose=0, batch_size=64)
            fit = (ResidualTexture.fit if self.texture_kind == "spectrum"
                   else ResidualTexture.fit_exemplars)
            self.texture = fit(x - decoded, classes, self.n_classes)
        return self.history

    def interpolate(self, a: np.ndarray, b: np.ndarray, cls: int, steps: int = 7
                    ) -> np.ndarray:
        """Decoded images along the latent line between real images ``a`` and ``b`` of class
        ``cls``: (steps, size, size, channels) in [-1, 1]; first ≈ a, last ≈ b."""
        return latent_line(self.encoder, self.generator, self.latent_dim, self.n_classes,
                           a, b, cls, steps)


@register("generative", "dcgan", small={"latent_dim": 8, "filters": 4})
def dcgan(size: int, channels: int, n_classes: int, latent_dim: int = 32,
          filters: int = 32, batch_norm: bool = True) -> DCGAN:
    """Class-conditional DCGAN over square grey images (transposed-conv generator, conv
    discriminator); ``batch_norm``: in the generator, as in the paper (sampling uses its
    moving statistics)."""
    return DCGAN(size, channels, n_classes, latent_dim, filters, batch_norm)


@register("generative", "image_cvae", small={"latent_dim": 8, "filters": 4})
def image_cvae(size: int, channels: int, n_classes: int, latent_dim: int = 32,
               filters: int = 32, sampling: str = CVAE_SAMPLINGS[0],
               texture: str = CVAE_TEXTURES[0]) -> ImageCVAE:
    """Conditional VAE over square grey images (conv encoder, transposed-conv decoder);
    ``sampling``: latent draws from the prior or from the training codes' class Gaussians;
    ``texture``: the decoded means as they are, or plus a residual texture field."""
    return ImageCVAE(size, channels, n_classes, latent_dim, filters, sampling, texture)
