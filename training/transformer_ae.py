"""A transformer autoencoder for anomalies whose attention ships with it, so the gateway can
say where an alarm's window points (``edge_runtime/attribution.py``).

Tokens are the window's time steps: each step's tags are embedded (Dense), a learned
position is added, ``blocks`` of multi-head self-attention and a feed-forward layer
(post-norm residuals) follow, and a Dense maps each step back to its tags. Gaussian input
noise in training (inactive at inference) keeps it from learning the identity, as the
denoising AE does. The attention is written from builtin layers (Dense, Dot, Softmax), so
its weights are a tensor of the graph: the shipped model has a second output, the attention
each step *received* — mean over heads, blocks and query steps — (N, L), and every op is a
LiteRT builtin.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from training.registry import register
from training.tft import _step_embedding

WEIGHTS_STEM = "ae_weights_"  # each head's (N, L, L) softmax weights: ae_weights_<block>_<h>
ATTENTION_OUTPUT = "step_attention"  # (N, L) attention received per step, sums to 1


def _attention_block(x, d_model: int, heads: int, ff: int, block: int):
    """One post-norm encoder block (its heads' weights: layers ``ae_weights_<block>_<h>``)."""
    d_head = max(d_model // heads, 1)
    scale = 1.0 / float(np.sqrt(d_head))
    outs = []
    for h in range(heads):
        q = layers.Dense(d_head, use_bias=False, name=f"ae_query_{block}_{h}")(x)
        k = layers.Dense(d_head, use_bias=False, name=f"ae_key_{block}_{h}")(x)
        v = layers.Dense(d_head, use_bias=False, name=f"ae_value_{block}_{h}")(x)
        scores = layers.Rescaling(scale)(layers.Dot(axes=(2, 2))([q, k]))
        weights = layers.Softmax(axis=-1, name=f"{WEIGHTS_STEM}{block}_{h}")(scores)
        outs.append(layers.Dot(axes=(2, 1))([weights, v]))
    att = layers.Concatenate()(outs) if heads > 1 else outs[0]
    x = layers.LayerNormalization()(layers.Add()([x, layers.Dense(d_model)(att)]))
    hidden = layers.Dense(d_model)(layers.Dense(ff, activation="relu")(x))
    return layers.LayerNormalization()(layers.Add()([x, hidden]))


@register("anomaly", "transformer_ae", small={"d_model": 8, "heads": 2, "ff": 16})
def transformer_ae(window: int, features: int, d_model: int = 16, heads: int = 2,
                   blocks: int = 1, ff: int = 32, noise: float = 0.2):
    """Transformer autoencoder over time steps (self-attention, denoising); its attention is
    shipped as a second output for the alarm's attribution."""
    if d_model < heads:
        raise ValueError(f"transformer_ae: d_model={d_model} must be at least heads={heads}")
    inputs = keras.Input((window, features))
    x = layers.GaussianNoise(noise)(inputs) if noise else inputs
    x = layers.Add()([layers.Dense(d_model, name="ae_embed")(x),
                      _step_embedding(inputs, window, window, d_model)])
    for block in range(blocks):
        x = _attention_block(x, d_model, heads, ff, block)
    return keras.Model(inputs, layers.Dense(features, name="ae_out")(x), name="transformer_ae")


def with_attention_output(model: keras.Model) -> keras.Model:
    """The model to ship: a ``transformer_ae`` gets a second output, the attention each step
    received — the mean over heads and blocks of the softmax weights (N, L, L), averaged over
    the query steps — (N, L). Any other model is returned as is; the reconstruction stays the
    first output."""
    maps = [layer.output for layer in model.layers if layer.name.startswith(WEIGHTS_STEM)]
    if not maps:
        return model
    mean = layers.Average()(maps) if len(maps) > 1 else maps[0]
    received = layers.GlobalAveragePooling1D(name=ATTENTION_OUTPUT)(mean)  # (N, q, k) → (N, k)
    return keras.Model(model.inputs, [model.outputs[0], received], name=model.name)
