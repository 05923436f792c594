"""Logic of the training experiments (trainability, clipping, weight-decay) that is not training itself."""

import jax
import jax.numpy as jnp
import numpy as np

from gradjax.experiments import clipping, trainability, weight_decay
from gradjax.train import TrainConfig, adding_problem, make_optimizer


def test_to_index_maps_centres_interpolates_and_extends():
    """Cell centres go to 0..n−1; between them linearly (in log space for depths); beyond, the end slope."""
    centres = np.array([0.5, 1.0, 3.0])
    got = trainability._to_index([0.5, 0.75, 2.0, 3.0, 4.0, 0.25], centres, False)
    # 0.75 halfway 0.5→1; 2.0 halfway 1→3; 4.0 = 3 + 1 with end spacing 2 → 2.5; 0.25 = 0.5 − 0.25 with spacing 0.5 → −0.5
    np.testing.assert_allclose(got, [0.0, 0.5, 1.5, 2.0, 2.5, -0.5])
    depths = np.array([10.0, 100.0])
    np.testing.assert_allclose(trainability._to_index([np.sqrt(1000.0), 1000.0], depths, True), [0.5, 2.0])


def test_coupled_l2_strength_matches_decoupled_decay_under_momentum():
    """λ₂ = λ(1 − β): with W held fixed, the heavy-ball trace of the L2 gradient λ₂·W converges to the
    decoupled decay's step λ·W (geometric series Σ β^k = 1/(1 − β); after 300 steps β^300 ≈ 2e−14)."""
    cell = {"decay": 0.2, "sigma_w2": 4.0, "width": 32}
    lam = weight_decay.strengths(cell)
    w = {"blocks": {"kernel": jnp.full((2, 3, 3), 0.7, jnp.float64)}}
    base = TrainConfig(optimizer="momentum", learning_rate=0.01, momentum=weight_decay.MOMENTUM, steps=10)
    coupled = make_optimizer(base)
    decoupled = make_optimizer(base.with_(weight_decay=lam["decoupled"]))
    s_c, s_d = coupled.init(w), decoupled.init(w)
    g_l2 = jax.tree.map(lambda x: lam["l2"] * x, w)
    zero = jax.tree.map(jnp.zeros_like, w)
    for _ in range(300):
        u_c, s_c = coupled.update(g_l2, s_c, w)
        u_d, s_d = decoupled.update(zero, s_d, w)
    np.testing.assert_allclose(u_c["blocks"]["kernel"], u_d["blocks"]["kernel"], rtol=1e-9)
    # L1 push per entry equals the L2 gradient at the mean |W| of N(0, σ_w²/N): E|W| = √(2σ_w²/(πN))
    np.testing.assert_allclose(lam["l1"], lam["l2"] * np.sqrt(2 * 4.0 / (np.pi * 32)))


def test_drive_variance_of_the_adding_problem():
    """q_in = E‖x_t‖²/in_dim = (E u² + E m²)/2 = (1/3 + 2/T)/2 for values u ~ U(0, 1) and two markers in T
    steps; 4,096 sequences of T = 20 (80k value draws: standard error of E u² ≈ 1e−3)."""
    data = adding_problem(seq_len=20, n_train=4096, n_test=8, seed=1)
    np.testing.assert_allclose(clipping._drive_variance(data), (1 / 3 + 2 / 20) / 2, atol=3e-3)


def test_row_steps_match_the_history_rows():
    """The step coordinate equals what gradjax.train records: every log_every updates, and at the end."""
    tc = TrainConfig(steps=25, log_every=10)
    np.testing.assert_array_equal(tc.row_steps, [10, 20, 25])
    np.testing.assert_array_equal(tc.with_(steps=30).row_steps, [10, 20, 30])
