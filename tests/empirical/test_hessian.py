"""Hessian spectra: closed forms (a quadratic, a deep linear chain at a known point) and stochastic
Lanczos quadrature against the exact eigvalsh of the full Hessian of a small zoo network."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree

from gradjax.config import NetConfig
from gradjax.empirical.hessian import block_spectrum, hessian_blocks, hessian_spectrum, hvp
from gradjax.empirical.lanczos import gauss_quadrature, lanczos_tridiagonal
from gradjax.empirical.losses import loss_fn
from gradjax.nn.stack import forward, init_params

pytestmark = pytest.mark.quick_codegen  # compile-bound: see tests/conftest.py


def test_quadratic_closed_form():
    # f(θ) = ½ Σ a_i θ_i²: H = diag(a). Rademacher zᵀHz = Σ a_i z_i² = Σ a_i exactly, so the
    # Hutchinson trace has zero variance; k = n Lanczos steps give every eigenvalue.
    a = jnp.asarray([5.0, 3.0, 2.0, -1.0, 0.5, 0.25], jnp.float64)
    f = lambda th: 0.5 * jnp.sum(a * th**2)  # noqa: E731
    theta = jnp.linspace(-1, 1, 6, dtype=jnp.float64)
    np.testing.assert_allclose(hvp(f, theta, jnp.ones(6, jnp.float64)), a, rtol=1e-14)
    bs = block_spectrum(f, theta, jax.random.key(0), k=6, probes=3, trace_probes=5, top=3)
    np.testing.assert_allclose(bs.top, [5.0, 3.0, 2.0], rtol=1e-10)
    np.testing.assert_allclose(bs.trace, float(jnp.sum(a)), rtol=1e-14)
    np.testing.assert_allclose(bs.trace_stderr, 0.0, atol=1e-14)
    # k = n from a probe with no zero component: each probe's nodes are the n eigenvalues themselves
    np.testing.assert_allclose(np.sort(np.asarray(bs.nodes).reshape(3, 6), axis=-1),
                               np.tile(np.sort(np.asarray(a)), (3, 1)), atol=1e-10)


def test_lanczos_quadrature_is_exact_for_low_degree_polynomials():
    # Gauss quadrature with k nodes integrates degree < 2k exactly: Σ w θ^m = vᵀ A^m v (Golub & Meurant 2010)
    a = jax.random.normal(jax.random.key(5), (30, 30), jnp.float64)
    a = a + a.T
    v = jax.random.normal(jax.random.key(6), (30,), jnp.float64)
    v = v / jnp.linalg.norm(v)
    theta, w = gauss_quadrature(lanczos_tridiagonal(lambda u: a @ u, v, 8))
    for m in range(16):
        want = v @ np.linalg.matrix_power(np.asarray(a), m) @ v
        np.testing.assert_allclose(np.sum(w * theta**m), want, rtol=1e-9, atol=1e-9 * 10.0**m, err_msg=f"m={m}")


class LinearChain(nnx.Module):
    """y = w_L ⋯ w_1 x, scalar weights (1×1 linear layers without bias), every w_l = 1."""

    def __init__(self, depth: int, *, rngs: nnx.Rngs):
        self.layers = nnx.List([nnx.Linear(1, 1, use_bias=False, kernel_init=nnx.initializers.ones, rngs=rngs)
                                for _ in range(depth)])

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def test_deep_linear_chain_closed_form():
    # loss ½(p x − t)² with p = Π w_l, at w = 1, x = 1, t = 0 (mse over a batch of one):
    # ∂²/∂w_i∂w_j = (p/w_i)(p/w_j) + (p − t) p/(w_i w_j) = 2 (i ≠ j), ∂²/∂w_i² = (p/w_i)² = 1,
    # so H = 2·11ᵀ − I with eigenvalues 2L − 1 (once) and −1 (L − 1 times).
    depth = 4
    x = jnp.ones((1, 1), jnp.float32)
    t = jnp.zeros((1, 1), jnp.float32)
    # probes = n = L orthonormal probes: the moments are exact (see lanczos.orthogonal_probes)
    hs = hessian_spectrum(lambda rngs: LinearChain(depth, rngs=rngs), 2, x, t, "mse", k=depth, probes=depth,
                          trace_probes=8, top=2)
    assert hessian_blocks(lambda rngs: LinearChain(depth, rngs=rngs), x) == ("all",) + tuple(
        f"layers/{l}" for l in range(depth))
    np.testing.assert_allclose(hs.top[:, 0], [[2 * depth - 1, -1]] * 2, rtol=1e-5)
    # tr H = L; Rademacher zᵀHz = 2(Σz)² − L varies with z: the estimate is within 4 standard errors
    assert np.all(np.abs(np.asarray(hs.trace[:, 0]) - depth) < 4 * np.asarray(hs.trace_stderr[:, 0]))
    np.testing.assert_allclose(hs.top[:, 1:, 0], 1.0, rtol=1e-6)  # one weight: the diagonal entry
    np.testing.assert_allclose(hs.moment(1)[:, 0], (2 * depth - 1 - (depth - 1)) / depth, atol=1e-5)


CFG = NetConfig(arch="mlp", depth=2, width=8, in_dim=4, out_dim=2, activation="tanh", sigma_w2=1.5, sigma_b2=0.05,
                dtype="float64")  # 202 parameters


def _compiled_hessian(f):
    """jax.hessian(f) as one compiled program (eagerly every primitive of its trace compiles apart),
    without LLVM's optimisation passes: it runs once, on a 202 × 202 matrix (IEEE arithmetic at every level)."""
    return jax.jit(jax.hessian(f), compiler_options={"xla_backend_optimization_level": 0})


def _exact(cfg, key, x, t):
    params = init_params(cfg, key)
    theta, unravel = ravel_pytree(params)
    f = lambda th: loss_fn("mse")(forward(cfg, unravel(th), x), t)  # noqa: E731
    return np.linalg.eigvalsh(np.asarray(_compiled_hessian(f)(theta))), params, f


def test_slq_moments_top_and_trace_match_exact_eigvalsh():
    x = jax.random.normal(jax.random.key(3), (16, 4), jnp.float64)
    t = jax.random.normal(jax.random.key(4), (16, 2), jnp.float64)
    lam, params, f = _exact(CFG, jax.random.key(1), x, t)
    n = lam.size
    assert n <= 2000
    # n orthonormal probes: the average of vᵀ f(H) v is tr f(H)/n exactly, the k-node quadrature is
    # exact for degree < 2k, so moments 1..4 carry rounding only; the 2% target has room for that.
    hs = hessian_spectrum(CFG, [1], x, t, "mse", k=24, probes=n, trace_probes=64, top=3)
    for m in (1, 2, 3, 4):
        np.testing.assert_allclose(float(hs.moment(m)[0, 0]), np.mean(lam**m), rtol=0.02, err_msg=f"moment {m}")
    np.testing.assert_allclose(np.asarray(hs.top[0, 0]), lam[::-1][:3], rtol=1e-3)
    # Hutchinson: within 4 standard errors (64 Rademacher probes)
    assert abs(float(hs.trace[0, 0]) - lam.sum()) < 4 * float(hs.trace_stderr[0, 0])
    # block "blocks/0": the diagonal block of the full Hessian in that layer's kernel and bias
    pk, pb = params["blocks"]["kernel"], params["blocks"]["bias"]

    def f_block(th):
        p = {**params, "blocks": {"kernel": pk.at[0].set(th[:64].reshape(8, 8)), "bias": pb.at[0].set(th[64:])}}
        return f(ravel_pytree(p)[0])

    lam_b = np.linalg.eigvalsh(np.asarray(_compiled_hessian(f_block)(jnp.concatenate([pk[0].ravel(), pb[0]]))))
    assert hessian_blocks(CFG)[2] == "blocks/0"
    np.testing.assert_allclose(np.asarray(hs.top[0, 2]), lam_b[::-1][:3], rtol=1e-3)
