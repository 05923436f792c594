import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradjax.config import NetConfig
from gradjax.empirical import jacobian_spectrum
from gradjax.nn.stack import init_params, input_shape
from tests.empirical.reference import reference_jacobians, singular_values, to64
from tests.empirical.test_gradients import CASES, _ids

pytestmark = pytest.mark.quick_codegen  # compile-bound: see tests/conftest.py


RTOL = {"float32": 1e-4, "float64": 1e-10}


def _setup(case, dtype, seed=0, depth=3, width=5, batch=4):
    cfg = NetConfig(depth=depth, width=width, in_dim=4, out_dim=3, sigma_b2=0.2, dtype=dtype, **case)
    x = jax.random.normal(jax.random.key(200 + seed), input_shape(cfg, batch), cfg.jnp_dtype)
    return cfg, x


def _reference_sv(cfg, seed, x):
    # Parameters drawn by compiled code, as inside jacobian_spectrum (eager draws can differ in the last bit).
    params = jax.jit(init_params, static_argnums=0)(cfg, jax.random.key(seed))
    cfg64, p64 = to64(cfg, params)
    return np.stack([singular_values(j) for j in reference_jacobians(cfg64, p64, x.astype(jnp.float64))])


def _check_sv(got_log10, ref, rtol, method):
    got = 10.0 ** np.asarray(got_log10, np.float64)  # (n_layers, N)
    smax = ref.max(axis=-1, keepdims=True)
    # A backward-stable SVD fixes σ_i to ~ε·σ_max absolutely (Golub & Van Loan, Matrix Computations,
    # Sec. 8.6.1): relative tolerance rtol, plus 100 ε·σ_max absolute for the tiny ones.
    eps = np.finfo(np.float32 if rtol > 1e-6 else np.float64).eps
    if method == "gram":
        # eigvalsh of G Gᵀ resolves σ² to rtol · σ_max² (absolute), hence σ_i to rtol·σ_max²/σ_i.
        np.testing.assert_allclose(got**2, ref**2, rtol=rtol, atol=rtol * smax.max() ** 2)
        return
    # Singular values below 1e-9 σ_max are zero up to rounding (a norm's projection, h_0 = 0 of rnn).
    sel = ref > 1e-9 * smax
    np.testing.assert_allclose(got[sel], ref[sel], rtol=rtol, atol=100 * eps * smax.max())
    assert np.all(np.nan_to_num(got[~sel], nan=0.0) < 1e-6 * np.broadcast_to(smax, got.shape)[~sel])


def _jac_cases():
    """One case per arch × norm (positions and residual options alternate), each with a method and dtype:
    svd and gram alternate; every third case also runs in float32."""
    seen, out = set(), []
    for c in CASES:
        if (c["arch"], c["norm"]) in seen:
            continue
        seen.add((c["arch"], c["norm"]))
        i = len(out)
        out.append(pytest.param(c, ("svd", "gram")[i % 2], ("float64", "float32")[:1 + (i % 3 == 0)], id=_ids(c)))
    return out


@pytest.mark.parametrize("case, method, dtypes", _jac_cases())
def test_spectra_match_jacrev_and_svd(case, method, dtypes):
    for dtype in dtypes:
        cfg, x = _setup(case, dtype, seed=1)
        got = jacobian_spectrum(cfg, seeds=[2], inputs=x, layers="all", method=method)
        assert got.shape == (1, cfg.depth, cfg.state_size)
        _check_sv(got[0], _reference_sv(cfg, 2, x), RTOL[dtype], method)


def test_float32_svd_and_float64_working_precision():
    cfg, x = _setup(dict(arch="resmlp", norm="layernorm", norm_position="pre", activation="tanh"), "float32", depth=4, width=8)
    ref = _reference_sv(cfg, 0, x)
    _check_sv(jacobian_spectrum(cfg, seeds=1, inputs=x, method="svd")[0], ref, RTOL["float32"], "svd")
    _check_sv(jacobian_spectrum(cfg, seeds=1, inputs=x, method="svd", dtype="float64")[0], ref, RTOL["float64"], "svd")


@pytest.mark.parametrize("dtype, sigma_w2, depth", [("float64", 1.5, 6), ("float32", 4.0, 200)])
def test_linear_orthogonal_singular_values_are_sigma_w_to_the_L_minus_l(dtype, sigma_w2, depth):
    # Saxe et al. 2013 (arXiv:1312.6120): ∂h_L/∂h_l = W_{l+1}…W_L, a product of scaled orthogonal
    # matrices, so every singular value is σ_w^(L−l) exactly. At σ_w² = 4, L = 200 this is 2^200 ≈ 1.6e60,
    # beyond float32 (and the forward pass itself overflows): the log-scale carries it.
    cfg = NetConfig(depth=depth, width=8, activation="linear", init="orthogonal", sigma_w2=sigma_w2, dtype=dtype)
    want = (depth - np.arange(depth))[:, None] * 0.5 * math.log10(sigma_w2) * np.ones((1, 8))
    for method in ("svd", "gram"):
        got = np.asarray(jacobian_spectrum(cfg, seeds=2, method=method), np.float64)
        # float32: each of the 200 blocks (a float32 "orthogonal" W is orthogonal to ~1e-6, and the
        # per-block log-scale update rounds at ~1e-7) adds ≲ 2e-6 to the log10 values: 4e-4 in all.
        tol = 1e-12 if dtype == "float64" else depth * 2e-6
        np.testing.assert_allclose(got, np.broadcast_to(want, got.shape), rtol=0, atol=tol)


def test_lanczos_top_singular_values_match_svd():
    cfg = NetConfig(depth=5, width=24, activation="tanh", sigma_w2=1.8, sigma_b2=0.1, dtype="float64")
    svd = np.asarray(jacobian_spectrum(cfg, seeds=2, layers=[0, 3], method="svd"))
    lz = np.asarray(jacobian_spectrum(cfg, seeds=2, layers=[0, 3], method="lanczos", k=16))
    assert lz.shape == (2, 2, 16)
    # 16 Lanczos steps on a 24 × 24 operator: the top 3 Ritz values are converged to ~machine precision.
    np.testing.assert_allclose(10 ** lz[..., :3], 10 ** svd[..., :3], rtol=1e-8)


def test_layers_selection_chunking_and_errors():
    cfg = NetConfig(depth=4, width=8, arch="rnn", norm="rmsnorm")
    full = jacobian_spectrum(cfg, seeds=3)
    end = jacobian_spectrum(cfg, seeds=3, layers="end")
    sel = jacobian_spectrum(cfg, seeds=3, layers=[2, 0])
    assert full.shape == (3, 4, 8) and end.shape == (3, 1, 8) and sel.shape == (3, 2, 8)
    np.testing.assert_allclose(sel[:, 1], full[:, 0], rtol=1e-6)
    np.testing.assert_allclose(end[:, 0], full[:, 0], rtol=1e-6)
    assert bool(jnp.all(full[..., :-1] >= full[..., 1:]))  # sorted descending (equal -inf tails compare True)
    with pytest.warns(UserWarning, match=r"one seed needs about .* KiB, more than max_bytes=1 \(1 B\)"):
        chunked = jacobian_spectrum(cfg, seeds=3, max_bytes=1)
    np.testing.assert_array_equal(chunked, full)  # chunked == unchunked
    with pytest.raises(ValueError, match="method must be one of"):
        jacobian_spectrum(cfg, seeds=1, method="eig")
    with pytest.raises(ValueError, match="layers must be"):
        jacobian_spectrum(cfg, seeds=1, layers=[4])
    with pytest.raises(ValueError, match="batch of at least 2"):
        jacobian_spectrum(NetConfig(depth=2, width=4, norm="batchnorm"), seeds=1, batch=1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 7, 7), (3, 5, 16, 16)])
def test_host_eigvalsh_threaded_equals_one_lapack_call_per_matrix(shape, dtype):
    # Reference: numpy's eigvalsh on each matrix alone, with its default BLAS threads; the threaded
    # batch split must give the very same numbers (same LAPACK routine per matrix) in the input dtype.
    from gradjax.empirical.jacobians import eigvalsh, host_eigvalsh

    g = np.random.default_rng(7).standard_normal(shape).astype(dtype)
    a = g @ np.swapaxes(g, -1, -2)
    ref = np.stack([np.linalg.eigvalsh(m) for m in a.reshape((-1,) + shape[-2:])]).reshape(shape[:-1])
    got = host_eigvalsh(a)
    assert got.dtype == dtype and got.shape == shape[:-1]
    np.testing.assert_array_equal(got, ref)
    if dtype == np.float32:  # through jit and vmap (pure_callback, vmap_method="broadcast_all")
        np.testing.assert_array_equal(np.asarray(jax.jit(jax.vmap(eigvalsh))(jnp.asarray(a))), ref)


@pytest.mark.parametrize("case", [dict(activation="tanh", sigma_w2=1.8), dict(arch="rnn"),
                                  dict(arch="resmlp", norm="layernorm"), dict(norm="batchnorm", activation="relu")],
                         ids=["mlp-tanh", "rnn", "resmlp-layernorm", "mlp-batchnorm-relu"])
def test_spectral_density_full_krylov_nodes_are_the_exact_singular_values(case):
    # k = N Lanczos steps from any start vector span the whole space (generic v): the Gauss
    # quadrature's nodes are then the N eigenvalues of GᵀG themselves. Reference: jacrev + svd
    # in float64 (tests/empirical/reference.py), per layer; with batchnorm example 0's block.
    from gradjax.empirical import jacobian_spectral_density

    cfg, x = _setup(case, "float64", seed=3, depth=4, width=6)
    q = jacobian_spectral_density(cfg, seeds=[3], inputs=x, layers=[0, 2], k=6, probes=2)
    assert q.log10_sv.shape == q.weights.shape == (1, 2, 12)
    np.testing.assert_allclose(np.asarray(q.weights.sum(-1)), 1.0, rtol=1e-12)
    assert bool(jnp.all(q.weights >= 0))
    ref = _reference_sv(cfg, 3, x)[[0, 2]]  # (2, N) singular values, descending
    for layer in range(2):
        for probe in range(2):
            nodes = np.sort(10.0 ** (2 * np.asarray(q.log10_sv[0, layer, probe * 6:(probe + 1) * 6])))[::-1]
            # Lanczos resolves eigenvalues of GᵀG to ~ε·λ_max (absolute), hence the tolerance.
            np.testing.assert_allclose(nodes, ref[layer] ** 2, rtol=0, atol=1e-10 * ref[layer, 0] ** 2)


def test_spectral_density_estimates_moments_and_cdf_of_the_exact_spectrum():
    # Width 128, 4 seeds, 8 probes of k = 24 steps, float32. References from the same networks'
    # exact singular values (method="svd"). (1) mean σ²: the quadrature is exact for polynomials of
    # degree < 2k, so the only error is the probe noise, std ≈ std(σ²)·√(2/(N·P)) per seed; allowed
    # 5 of those. (2) the fraction of σ below three levels: within 0.05 (k = 24 nodes resolve the
    # distribution to a few percent). (3) the top node is the converged σ_max (rtol 1e-3).
    from gradjax.empirical import jacobian_spectral_density

    cfg = NetConfig(depth=6, width=128, activation="tanh", sigma_w2=1.8, sigma_b2=0.1)
    sv = np.asarray(jacobian_spectrum(cfg, 4, layers="end", method="svd"), np.float64)[:, 0]  # (S, N) log10
    q = jacobian_spectral_density(cfg, 4, layers="end", k=24, probes=8)
    nodes, w = np.asarray(q.log10_sv[:, 0], np.float64), np.asarray(q.weights[:, 0], np.float64)
    lam, lam_q = 10.0 ** (2 * sv), np.where(np.isfinite(nodes), 10.0 ** (2 * nodes), 0.0)
    noise = lam.std(-1) * np.sqrt(2 / (128 * 8))
    assert np.all(np.abs((w * lam_q).sum(-1) - lam.mean(-1)) <= 5 * noise), ((w * lam_q).sum(-1), lam.mean(-1), noise)
    # (2) CDF at each seed's 25/50/75/90% levels. Bound: a k-node Gauss quadrature's distribution
    # function is off by at most the weight of a node adjacent to x (Chebyshev–Markov–Stieltjes
    # inequalities; Golub & Meurant 2010, Sec. 6.1), averaged over the probes; plus the probe noise
    # of vᵀ 1[GᵀG ≤ x] v, std √(2F(1−F)/(N·P)) — allowed 4 of those.
    levels = np.quantile(sv, [0.25, 0.5, 0.75, 0.9], axis=-1).T  # (S, 4)
    want = (sv[:, :, None] <= levels[:, None, :]).mean(1)
    for s in range(4):
        got = np.asarray(q.cdf(levels[s]))[s, 0]
        per_probe_n, per_probe_w = nodes[s].reshape(8, 24), w[s].reshape(8, 24) * 8
        bound = np.zeros(4)
        for n_p, w_p in zip(per_probe_n, per_probe_w):
            order = np.argsort(n_p)
            n_p, w_p = n_p[order], w_p[order]
            for i, x in enumerate(levels[s]):
                j = np.searchsorted(n_p, x)
                bound[i] += max(w_p[max(j - 1, 0)], w_p[min(j, 23)]) / 8
        tol = bound + 4 * np.sqrt(2 * want[s] * (1 - want[s]) / (128 * 8))
        assert np.all(np.abs(got - want[s]) <= tol), (s, got, want[s], tol)
    np.testing.assert_allclose(10.0 ** nodes.max(-1), 10.0 ** sv[:, 0], rtol=1e-3)
    grid = np.linspace(sv.min() - 1, sv.max() + 1, 400)
    dens = np.asarray(q.density(grid, bandwidth=0.1))[:, 0]
    np.testing.assert_allclose(dens.sum(-1) * (grid[1] - grid[0]), w.sum(-1) - (w * ~np.isfinite(nodes)).sum(-1), rtol=1e-2)
    with pytest.raises(ValueError, match="bandwidth must be > 0"):
        q.density(grid, bandwidth=0)
    with pytest.raises(ValueError, match="probes"):
        jacobian_spectral_density(cfg, 1, probes=0)


def test_host_eigvalsh_isolates_a_non_finite_matrix():
    # A diverged seed's Gram matrix (nan / inf entries) must not abort the batch: its eigenvalues are
    # nan, every other matrix's are numpy's own (reference: np.linalg.eigvalsh per matrix).
    from gradjax.empirical.jacobians import host_eigvalsh

    g = np.random.default_rng(3).standard_normal((4, 6, 6)).astype(np.float32)
    a = g @ np.swapaxes(g, -1, -2)
    a[1, 2, 3] = np.nan
    a[3, 0, 0] = np.inf
    got = host_eigvalsh(a)
    assert np.all(np.isnan(got[[1, 3]]))
    for i in (0, 2):
        np.testing.assert_array_equal(got[i], np.linalg.eigvalsh(a[i]))


def test_host_eigvalsh_concurrent_calls_leave_the_blas_threads_as_they_were():
    # Several devices' callbacks may call it at once; each limits BLAS to one thread while it runs.
    # Reference: threadpoolctl's own reading of the BLAS thread counts before and after.
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_info

    from gradjax.empirical.jacobians import host_eigvalsh

    before = sorted((d["filepath"], d["num_threads"]) for d in threadpool_info() if d["user_api"] == "blas")
    g = np.random.default_rng(5).standard_normal((32, 4, 24, 24)).astype(np.float32)
    a = g @ np.swapaxes(g, -1, -2)
    with ThreadPoolExecutor(8) as ex:
        outs = list(ex.map(host_eigvalsh, a))
    for got, m in zip(outs, a):
        np.testing.assert_array_equal(got, np.linalg.eigvalsh(m))
    after = sorted((d["filepath"], d["num_threads"]) for d in threadpool_info() if d["user_api"] == "blas")
    assert after == before
