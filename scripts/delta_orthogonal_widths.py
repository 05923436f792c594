"""Mean squared singular value of a delta-orthogonal cnn's ∂h_L/∂h_0 on a digit, and its gradient profile's
slope on eight digits, measured over widths.

Compares the seed mean of E σ² = tr(JᵀJ)/(P·N) (float64, J computed exactly position by position: a
delta-orthogonal cnn is block-diagonal over positions, J_α = Π_l diag φ′(h_{l−1}(α)) σ_w Q_l) with the
position-resolved mean field (``gradjax.theory.position_jacobian_sv2_mean``, every position from its own
q0) and the mean field at the mean length (``gradjax.theory.block_factors`` at the position mean of q0).
The numbers quoted in ``gradjax/experiments/delta_orthogonal.py`` come from this script (tanh, σ_b² = 0.05
at criticality, digit 0 of the training split):

    PYTHONPATH=. python scripts/delta_orthogonal_widths.py [--depths 8 32] [--widths 16 64 256] [--seeds 64]

Widths ≥ 256 estimate the trace with 8 Gaussian probes per position instead of the full product. With
``--slopes`` it prints instead the fitted slope of log10 ‖∂loss/∂h_l‖ per layer (``gradjax.empirical.gradient_profile``
on the first 8 training digits, float32, the experiment's measurement) beside the position-resolved theory's
(``gradjax.theory.position_gradient_profile``).
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import gradjax.empirical as E  # noqa: E402
import gradjax.theory as T  # noqa: E402
from gradjax.config import NetConfig  # noqa: E402
from gradjax.nn.stack import forward, init_params  # noqa: E402
from gradjax.theory.conv import input_covariance  # noqa: E402
from gradjax.train.data import load_digits  # noqa: E402

SIGMA_B2 = 0.05
PROBES = 8  # Gaussian probes per position for the trace at width ≥ 256


def measure(cfg, x, seeds):
    """(S,) E σ² of ∂h_L/∂h_0 per seed."""
    n, p = cfg.width, 64

    @jax.jit
    def one(key):
        params = init_params(cfg, key)
        _, taps = forward(cfg, params, x, taps=True)
        d = 1 - jnp.tanh(taps.preact[:, 0].reshape(cfg.depth, p, n)) ** 2  # φ′ of what block l sees
        k = params["blocks"]["kernel"][:, 1, 1]  # (L, N, N): σ_w Q_l at the kernel's centre
        probes = n >= 256
        v = jax.random.normal(key, (p, PROBES, n)) if probes else jnp.broadcast_to(jnp.eye(n), (p, n, n))
        v, _ = jax.lax.scan(lambda v, l: (jnp.einsum("prj,jk->prk", v * d[l][:, None, :], k[l]), None), v,
                            jnp.arange(cfg.depth))
        return jnp.sum(v**2) / (p * n * (PROBES if probes else 1))  # E‖vJ‖² = ‖J‖_F² per probe

    return np.asarray(jax.lax.map(one, jax.random.split(jax.random.key(0), seeds)))


def print_slopes(cfg, seeds):
    """Seed mean ± standard error of the measured slope beside the theory's (digits 0–7, float32)."""
    cfg = cfg.with_(dtype="float32")
    x = jnp.asarray(load_digits().x_train[:8].reshape(8, 8, 8, 1), jnp.float32)
    q0 = np.stack([np.diagonal(np.asarray(input_covariance(cfg, xb))).reshape(8, 8) for xb in x])
    rel = np.asarray(E.relative_profile(np.asarray(E.gradient_profile(cfg, seeds=seeds, inputs=x).hidden)))
    s = np.asarray(E.fitted_slope(rel))
    th = float(E.fitted_slope(T.position_gradient_profile(cfg, q0)))
    print(f"L={cfg.depth:4d} N={cfg.width:5d} S={seeds}: measured slope {s.mean():+.4f} ± {s.std(ddof=1) / np.sqrt(seeds):.4f}, "
          f"position-resolved {th:+.4f}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--widths", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument("--seeds", type=int, default=64)
    ap.add_argument("--slopes", action="store_true", help="gradient-profile slopes instead of E σ²")
    a = ap.parse_args()
    x = jnp.asarray(load_digits().x_train[:1].reshape(1, 8, 8, 1), jnp.float64)
    sw = float(T.critical_sigma_w2("tanh", SIGMA_B2))
    for depth in a.depths:
        for width in a.widths:
            cfg = NetConfig(depth=depth, width=width, arch="cnn", spatial=(8, 8), in_dim=1, out_dim=10,
                            activation="tanh", init="delta_orthogonal", sigma_w2=sw, sigma_b2=SIGMA_B2, dtype="float64")
            if a.slopes:
                print_slopes(cfg, a.seeds)
                continue
            q0 = np.diagonal(np.asarray(input_covariance(cfg, x[0]))).reshape(8, 8)
            sv2 = measure(cfg, x, a.seeds)
            se = sv2.std(ddof=1) / np.sqrt(len(sv2)) / (sv2.mean() * np.log(10))
            pos = float(T.position_jacobian_sv2_mean(cfg, q0)[0])
            mean_q = float(np.sum(np.log10(np.asarray(T.block_factors(cfg, float(q0.mean()))))))
            print(f"L={depth:4d} N={width:5d} S={a.seeds}: measured log10 E σ² {np.log10(sv2.mean()):+.3f} ± {se:.3f}, "
                  f"position-resolved {pos:+.3f}, mean length {mean_q:+.3f}", flush=True)


if __name__ == "__main__":
    main()
