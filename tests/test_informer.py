"""Informer's pieces (``training/informer.py``), checked against numpy: ProbSparse attention
is full attention for the top-u queries and the mean (or, masked, the cumulative sum) of V for
the rest; the key sample is a constant of the model; distilling halves the encoder input; a
window too short for distilling is refused before TensorFlow loads. The train → convert →
LiteRT contract (with ``TOPK_V2`` in the shipped graph) is in test_forecaster_contract.py."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from edge_runtime.validation import ConfigError
from training.config import TrainConfig, check_train_config
from training.informer_args import check_informer_args, encoder_lengths, sparse_counts


def _softmax(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _qkv(length: int = 12, heads: int = 2, dim: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((2, heads, length, dim)).astype(np.float32) for _ in range(3)]


def _sparsity(q, k, sample):
    """M(q, K̄) = max − mean of q·k over each query's sampled keys (numpy)."""
    qk = np.einsum("bhqd,bhqsd->bhqs", q, k[:, :, sample])
    return qk.max(-1) - qk.mean(-1)


@pytest.mark.parametrize("causal", [False, True])
def test_prob_attention_is_full_attention_for_the_top_queries_only(causal):
    from training.informer import prob_attention, sample_indices

    q, k, v = _qkv()
    length, factor, seed = q.shape[2], 1, 3
    got = np.asarray(prob_attention(q, k, v, factor, causal, seed))
    u = sparse_counts(length, factor)
    assert u == 3 < length  # sparse: 3 of 12 queries attend
    top = np.argsort(-_sparsity(q, k, sample_indices(length, length, factor, seed)), -1)[..., :u]
    scores = np.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(q.shape[-1])
    if causal:
        scores = np.where(np.tril(np.ones((length, length), bool)), scores, -np.inf)
        lazy = np.cumsum(v, axis=2)
    else:
        lazy = np.broadcast_to(v.mean(axis=2, keepdims=True), v.shape)
    full = _softmax(scores) @ v
    picked = np.zeros(q.shape[:3], bool)
    np.put_along_axis(picked, top, True, axis=-1)
    expected = np.where(picked[..., None], full, lazy)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_prob_attention_with_every_query_picked_equals_full_attention():
    from training.informer import full_attention, prob_attention

    q, k, v = _qkv(length=6)
    assert sparse_counts(6, 5) == 6  # c·⌈ln 6⌉ = 10, capped at L
    for causal in (False, True):
        np.testing.assert_allclose(np.asarray(prob_attention(q, k, v, 5, causal, 0)),
                                   np.asarray(full_attention(q, k, v, causal)),
                                   rtol=1e-4, atol=1e-5)


def test_the_key_sample_is_a_constant_of_the_model():
    from training.informer import sample_indices

    a, b = sample_indices(24, 24, 5, seed=7), sample_indices(24, 24, 5, seed=7)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (24, 5 * math.ceil(math.log(24))) and a.min() >= 0 and a.max() < 24
    assert not np.array_equal(a, sample_indices(24, 24, 5, seed=8))


def test_distilling_halves_the_encoder_input():
    from training.informer import informer

    assert encoder_lengths(96, 3, True) == [96, 48, 24]
    assert encoder_lengths(9, 2, True) == [9, 5] and encoder_lengths(9, 2, False) == [9, 9]
    model = informer(16, 3, 4, 1, d_model=8, heads=2, d_ff=8, e_layers=3, factor=1)
    pools = [layer.output.shape[1] for layer in model.layers if layer.name.endswith("_pool")]
    assert pools == [8, 4]
    x = np.random.default_rng(0).standard_normal((2, 16, 3)).astype(np.float32)
    # untrained: the delta head starts at zero, so the forecast is the last value (persistence)
    np.testing.assert_allclose(np.asarray(model(x)), np.repeat(x[:, -1:, -1:], 4, axis=1))


def test_a_window_too_short_for_distilling_is_refused_before_tensorflow(tmp_path):
    with pytest.raises(ValueError, match=r"window.length 4 is too short for model.e_layers 3"
                                         r".* must be ≥ 8"):
        check_informer_args(4, 2, e_layers=3)
    with pytest.raises(ValueError, match=r"model.label_len 9 must be between 1 and"):
        check_informer_args(8, 2, label_len=9)
    with pytest.raises(ValueError, match=r"model.d_model 10 must be a multiple of model.heads"):
        check_informer_args(8, 2, d_model=10, heads=4)
    config = TrainConfig.model_validate({
        "name": "inf", "task": "forecast", "family": "informer",
        "model": {"e_layers": 3}, "window": {"length": 6}, "horizon": 2})
    with pytest.raises(ConfigError, match=r"model: window.length 6 is too short for "
                                          r"model.e_layers 3"):
        check_train_config(config, "inf.yaml")
    # the check itself never loads TensorFlow
    code = ("import sys; from training.informer_args import check_config_model; "
            "check_config_model('informer', 96, 24, {'e_layers': 3}); "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
