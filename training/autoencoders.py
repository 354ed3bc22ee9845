"""Anomaly-detection families: a window (L, F) of scaled tags in, its reconstruction out.

Every saved model is built from Keras built-in layers only, so the converter's child process
(which imports nothing of ours) can load it. The VAE trains with a custom sampling layer and
ships its deterministic decoder(mean) path: see :func:`edge_model`.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from training.registry import register

SCORES = ("reconstruction", "elbo")  # window score: MSE, or negative ELBO (VAE only)


@register("anomaly", "dense_ae")
def dense_ae(window: int, features: int, hidden: tuple[int, ...] = (64, 16),
             activation: str = "tanh",
             dropout: float = 0.0):
    """Dense autoencoder over the flattened window (bottleneck = last of ``hidden``).

    tanh saturates outside the training range, so an out-of-range tag cannot be
    reconstructed (ReLU nets extrapolate and miss slow drifts)."""
    inputs = keras.Input((window, features))
    x = layers.Flatten()(inputs)
    for units in hidden:
        x = layers.Dense(units, activation=activation)(x)
        if dropout:
            x = layers.Dropout(dropout)(x)
    for units in reversed(hidden[:-1]):
        x = layers.Dense(units, activation=activation)(x)
    x = layers.Dense(window * features)(x)
    return keras.Model(inputs, layers.Reshape((window, features))(x), name="dense_ae")


@register("anomaly", "denoising_ae")
def denoising_ae(window: int, features: int, hidden: tuple[int, ...] = (64, 16),
                 activation: str = "tanh", noise: float = 0.2):
    """Dense AE trained to undo Gaussian input noise (``noise`` std, scaled units).

    The noise layer is inactive at inference, so the shipped graph is a plain dense AE; the
    training noise keeps it from learning the identity on small training sets."""
    inputs = keras.Input((window, features))
    x = layers.GaussianNoise(noise)(inputs)
    x = layers.Flatten()(x)
    for units in hidden:
        x = layers.Dense(units, activation=activation)(x)
    for units in reversed(hidden[:-1]):
        x = layers.Dense(units, activation=activation)(x)
    x = layers.Dense(window * features)(x)
    return keras.Model(inputs, layers.Reshape((window, features))(x), name="denoising_ae")


@register("anomaly", "conv_ae")
def conv_ae(window: int, features: int, filters: tuple[int, int] = (32, 16), kernel: int = 5,
            activation: str = "tanh"):
    """Conv1D autoencoder: two stride-2 convolutions down, upsampling + convolutions back.

    The window is zero-padded to a multiple of 4 and cropped back, so any L works."""
    pad = (-window) % 4
    inputs = keras.Input((window, features))
    x = layers.ZeroPadding1D((0, pad))(inputs) if pad else inputs
    for f in filters:
        x = layers.Conv1D(f, kernel, strides=2, padding="same", activation=activation)(x)
    for f in reversed(filters):
        x = layers.UpSampling1D(2)(x)
        x = layers.Conv1D(f, kernel, padding="same", activation=activation)(x)
    x = layers.Conv1D(features, kernel, padding="same")(x)
    if pad:
        x = layers.Cropping1D((0, pad))(x)
    return keras.Model(inputs, x, name="conv_ae")


@register("anomaly", "lstm_ae")
def lstm_ae(window: int, features: int, units: int = 32, latent: int = 16):
    """LSTM encoder → latent vector repeated L times → LSTM decoder → per-step Dense.

    ``unroll=True``: a Keras 3 LSTM loop needs batch 1 and crashes the int8 converter
    (REFERENCE.md §4); unrolled, every mode converts with a dynamic batch."""
    inputs = keras.Input((window, features))
    x = layers.LSTM(units, return_sequences=True, unroll=True)(inputs)
    z = layers.LSTM(latent, unroll=True)(x)
    x = layers.RepeatVector(window)(z)
    x = layers.LSTM(units, return_sequences=True, unroll=True)(x)
    x = layers.TimeDistributed(layers.Dense(features))(x)
    return keras.Model(inputs, x, name="lstm_ae")


class KLSampling(layers.Layer):
    """Reparameterization z = μ + σ·ε with the KL(q(z|x) ‖ N(0, I)) term added as a loss.

    At inference it returns μ: the deterministic path the edge model ships."""

    def __init__(self, beta: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.beta = beta
        self.seed = keras.random.SeedGenerator(0)

    def call(self, mean, log_var, training=None):
        kl = -0.5 * ops.mean(ops.sum(1.0 + log_var - ops.square(mean) - ops.exp(log_var), -1))
        self.add_loss(self.beta * kl)
        if not training:
            return mean
        eps = keras.random.normal(ops.shape(mean), seed=self.seed)
        return mean + ops.exp(0.5 * log_var) * eps

    def get_config(self):
        return super().get_config() | {"beta": self.beta}


@register("anomaly", "vae")
def vae(window: int, features: int, hidden: int = 64, latent: int = 8, beta: float = 0.01,
        activation: str = "tanh"):
    """Variational AE (dense encoder/decoder); score = reconstruction error of decoder(μ).

    ``beta`` weighs the KL term per window against the summed-over-window MSE. The model
    returned here trains with :class:`KLSampling`; :func:`edge_model` gives the shipped graph."""
    inputs = keras.Input((window, features))
    h = layers.Dense(hidden, activation=activation)(layers.Flatten()(inputs))
    enc = keras.Model(inputs, [layers.Dense(latent, name="z_mean")(h),
                               layers.Dense(latent, name="z_log_var")(h)], name="encoder")
    z_in = keras.Input((latent,))
    d = layers.Dense(hidden, activation=activation)(z_in)
    d = layers.Reshape((window, features))(layers.Dense(window * features)(d))
    dec = keras.Model(z_in, d, name="decoder")
    mean, log_var = enc(inputs)
    # the KL term is per window, the MSE per element: scale so beta means "per element"
    z = KLSampling(beta / (window * features), name="sampling")(mean, log_var)
    return keras.Model(inputs, dec(z), name="vae")


def edge_model(model: keras.Model, score: str = "reconstruction") -> keras.Model:
    """The graph to save and convert: the model itself, or a VAE's decoder(encoder μ) path
    (built-in layers only, identical output to the VAE at inference).

    ``score="elbo"`` (VAE only) adds a second output, the KL term of each window weighted as
    in the training loss (``beta`` per element), so the edge computes the negative ELBO as
    mean squared reconstruction error + that output (:func:`edge_runtime.scoring.window_scores`).
    """
    if score not in SCORES:
        raise ValueError(f"score {score!r}: choose one of {SCORES}")
    sampling = [layer for layer in model.layers if isinstance(layer, KLSampling)]
    if not sampling:
        if score == "elbo":
            raise ValueError(f"score 'elbo' needs a VAE; {model.name} has no KL term")
        return model
    enc, dec = model.get_layer("encoder"), model.get_layer("decoder")
    inputs = keras.Input(model.input_shape[1:])
    mean, log_var = enc(inputs)
    if score == "reconstruction":
        return keras.Model(inputs, dec(mean), name=f"{model.name}_edge")
    kl = 0.5 * ops.sum(ops.square(mean) + ops.exp(log_var) - log_var - 1.0, axis=-1,
                       keepdims=True)
    return keras.Model(inputs, [dec(mean), sampling[0].beta * kl], name=f"{model.name}_elbo")
