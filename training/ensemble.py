"""Seed ensemble of one anomaly family: K trainings, one shipped model.

Why: a single autoencoder's reconstruction carries seed-specific noise (where its weights
happened to land), and on small normal sets that noise is a visible part of the score of a
normal window. Averaging the reconstructions of K models trained from different seeds keeps
what they agree on, the normal structure, and removes that noise, so the limit from normal
data sits lower relative to real faults.

The average is of **reconstructions**, not of per-model errors: the shipped model then keeps
the family's contract (window in, reconstruction (N, L, F) out), so the edge's scoring, the
per-tag contributions, the int8 converter and the parity gate apply unchanged. (A mean of
errors would need the input inside the graph and a new output kind for the edge to score.)
The ensemble is one Keras model of built-in layers (the members are nested functional models
joined by ``Average``), so it saves and converts to a single ``.tflite`` like any family.
"""

from __future__ import annotations

from collections.abc import Callable

SEED_STRIDE = 1000  # member i trains with seed + i·1000: member 0 is the single model


def member_seeds(seed: int, k: int) -> list[int]:
    """Distinct seeds of the K members. Member 0 uses ``seed`` itself (so it is the model a
    single run with that seed trains); the others stay clear of seeds 0–999 of single runs."""
    if k < 1:
        raise ValueError(f"ensemble size must be >= 1, got {k}")
    return [seed + SEED_STRIDE * i for i in range(k)]


def average_model(members: list) -> object:
    """One Keras model whose output is the mean of the members' outputs (same input).

    Each member must already be the graph to ship (a VAE's decoder(μ) path, not the training
    graph) with a single reconstruction output."""
    import keras

    if len(members) == 1:
        return members[0]
    shapes = {tuple(m.input_shape[1:]) for m in members}
    if len(shapes) != 1:
        raise ValueError(f"ensemble members disagree on the input shape: {sorted(shapes)}")
    if any(len(m.outputs) != 1 for m in members):
        raise ValueError("ensemble members must have one output (the reconstruction)")
    inputs = keras.Input(shapes.pop())
    outs = [keras.Model(m.inputs[0], m.outputs[0], name=f"member_{i}")(inputs)
            for i, m in enumerate(members)]
    return keras.Model(inputs, keras.layers.Average()(outs),
                       name=f"{members[0].name}_x{len(members)}")


def fit_ensemble(fit_one: Callable[[int], object], seed: int, k: int) -> object:
    """Train K members with ``fit_one(member_seed)`` and join them with :func:`average_model`.

    ``fit_one`` returns a trained model; VAEs are reduced to their shipped decoder(μ) graph
    before averaging (the KL sampling layer is training-only)."""
    from training.autoencoders import edge_model

    return average_model([edge_model(fit_one(s)) for s in member_seeds(seed, k)])
