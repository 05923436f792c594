"""The training claims, at CPU-test sizes: clipping tames exploding RNNs, trainability follows the
order-to-chaos picture, decoupled decay shrinks weights and narrows the per-layer gradient band.

Sizes are smaller than the issue's calibration (width 128, 1,500 steps; T = 60, N = 64, 2,000 steps),
which the experiments reproduce at full size; every test states its optimizer and budget. All runs
use fixed seeds 0..S−1, so on one machine and version they are deterministic.
"""

import numpy as np
import pytest

from gradjax.config import NetConfig
from gradjax.train import TrainConfig, adding_problem, load_digits, train

#: ½-MSE of the best constant predictor on the adding problem: ½·Var(u₁ + u₂) = ½·2/12 (u ~ U(0, 1)).
ADDING_BASELINE = 1.0 / 12.0
#: Chance accuracy on the 10 digit classes.
CHANCE = 0.1


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.mark.slow
def test_clipping_tames_an_exploding_rnn():
    """Vanilla tanh RNN, σ_w² = 9 (critical value 1 for tanh with σ_b² = 0), adding problem T = 50.

    Width 32, batch 64, 300 updates of SGD with momentum 0.9 at η = 0.2, 8 seeds. Without clipping
    the gradient norm explodes and most seeds diverge (6/8 on the reference CPU run; the others end
    far above the mean predictor); with ``clip_by_global_norm(0.3)`` no seed diverges and the loss
    stays at the mean predictor's scale (median 0.11 against the baseline 1/12 on that run).
    """
    T, S = 50, 8
    data = adding_problem(seq_len=T, n_train=1024, n_test=256, seed=0)
    cfg = NetConfig(depth=T, width=32, arch="rnn", in_dim=2, out_dim=1, activation="tanh", sigma_w2=9.0)
    tc = TrainConfig(optimizer="momentum", learning_rate=0.2, momentum=0.9, steps=300, batch_size=64, log_every=60)
    free = train(cfg, tc, data, seeds=S, eval_size=256, progress=False)
    clipped = train(cfg, tc.with_(clip="global_norm", clip_value=0.3), data, seeds=S, eval_size=256, progress=False)

    final_free = free.test_loss[-1]
    failed = free.diverged | ~(final_free < 2 * ADDING_BASELINE)  # NaN counts as failed
    assert free.diverged.mean() >= 0.5, free.diverged_at
    assert failed.mean() >= 0.75, final_free

    assert not clipped.diverged.any(), clipped.diverged_at
    assert np.all(np.isfinite(clipped.test_loss))
    assert np.median(clipped.test_loss[-1]) < 2 * ADDING_BASELINE, clipped.test_loss[-1]
    assert clipped.clip_fraction.max() > 0  # the clip did act
    # Before clipping the raw gradient still explodes at times; clipping bounds what the optimizer sees.
    assert np.nanmax(clipped.grad_norm) > 10 * 0.3
    assert np.all(clipped.clipped_norm <= 0.3 * (1 + 1e-5))


TRAINABILITY = {
    # name: (activation, init, σ_w², σ_b², optimizer, trains?)
    "tanh_critical": ("tanh", "gaussian", 1.76, 0.05, "momentum", True),
    "tanh_ordered": ("tanh", "gaussian", 0.5, 0.05, "momentum", False),
    "sigmoid_small": ("sigmoid", "gaussian", 1.0, 0.05, "momentum", False),
    "relu_he": ("relu", "he_normal", None, 0.0, "adam", True),
    "relu_small": ("relu", "gaussian", 0.5, 0.0, "adam", False),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TRAINABILITY))
def test_trainability_at_depth_30_on_digits(digits, name):
    """Depth 30, width 32, 4 seeds, batch 128, 600 updates on the digits (1,400 train / 397 test).

    SGD with momentum 0.9 at η = 1e-2 for tanh/sigmoid, Adam at η = 1e-3 for ReLU (the issue's
    calibration: ReLU/He fails under that SGD setting but trains with Adam). Near the tanh critical
    line (σ_w² = 1.76, σ_b² = 0.05; χ₁ ≈ 1) the median test accuracy reaches ≥ 90% (94.8% on the
    reference CPU run), ReLU with He init ≥ 80% (89.3%); deep in the ordered phase (tanh σ_w² = 0.5),
    sigmoid at σ_w² = 1 and ReLU at σ_w² = 0.5 stay within 10 points of chance (8% there).
    """
    act, init, sw2, sb2, opt, trains = TRAINABILITY[name]
    cfg = NetConfig(depth=30, width=32, in_dim=64, out_dim=10, activation=act, init=init, sigma_w2=sw2, sigma_b2=sb2)
    lr = 1e-3 if opt == "adam" else 1e-2
    tc = TrainConfig(optimizer=opt, learning_rate=lr, steps=600, batch_size=128, log_every=300)
    h = train(cfg, tc, digits, seeds=4, progress=False)
    acc = np.median(h.accuracy[-1])
    if trains:
        assert acc >= (0.9 if act == "tanh" else 0.8), h.accuracy[-1]
    else:
        assert acc <= CHANCE + 0.1, h.accuracy[-1]
    assert not h.diverged.any()


@pytest.mark.slow
def test_decoupled_decay_shrinks_weights_and_narrows_the_gradient_band(digits):
    """Tanh MLP in the chaotic phase (σ_w² = 4, σ_b² = 0.3), depth 30, width 32, 4 seeds, batch 128,
    300 updates of SGD with momentum 0.9 at η = 1e-2, with and without decoupled decay λ = 0.2.

    Decay pulls the weights towards smaller σ_w², i.e. towards the critical line: the total weight norm
    ends lower (≈ 35 vs 63 on the reference CPU run) and the spread max_l − min_l of the per-layer
    log10 gradient norms, at its widest during the run, is narrower (median over seeds 0.83 vs 1.03).
    """
    cfg = NetConfig(depth=30, width=32, in_dim=64, out_dim=10, activation="tanh", sigma_w2=4.0, sigma_b2=0.3)
    tc = TrainConfig(optimizer="momentum", learning_rate=1e-2, steps=300, batch_size=128, log_every=50)
    plain = train(cfg, tc, digits, seeds=4, progress=False)
    decayed = train(cfg, tc.with_(weight_decay=0.2), digits, seeds=4, progress=False)

    def total_norm(h):  # (S,) Frobenius norm of all block kernels at the end
        return np.sqrt(np.sum(h.weight_norms[-1] ** 2, axis=-1))

    def widest_band(h):  # (S,) max over rows of the across-layer spread, log10 units
        return np.max(h.layer_grad_norms.max(-1) - h.layer_grad_norms.min(-1), axis=0)

    assert np.all(total_norm(decayed) < total_norm(plain)), (total_norm(decayed), total_norm(plain))
    assert np.median(widest_band(decayed)) < np.median(widest_band(plain)), (widest_band(decayed), widest_band(plain))
