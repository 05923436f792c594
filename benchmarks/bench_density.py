"""Matrix-free Jacobian spectral density at widths whose weights are never stored, against free probability.

A tanh MLP at criticality (σ_w² = the critical value for σ_b², inputs scaled so that every layer sits at
the fixed point q*), i.i.d. Gaussian weights drawn by tiles inside every matrix-vector product
(``weights="tiled"``: O(N · tile) memory per product, no N × N matrix ever formed), end-to-end
Jacobian ∂h_L/∂h_0 of one network by stochastic Lanczos quadrature
(:func:`gradjax.empirical.jacobian_spectral_density`), against the free-probability density of the
squared singular values (:func:`gradjax.theory.jacobian_density`, Pennington, Schoenholz & Ganguli
2017, arXiv:1711.04735). Reported: the Kolmogorov–Smirnov distance between the quadrature's
distribution function of σ² and the theory's, wall time and peak resident memory.

Orthogonal weights are not run this way: a Haar-orthogonal W cannot be drawn tile by tile (every
entry of Q = qr(A) depends on the whole Gaussian A; the exact O(N²)-free alternatives — products of
N Householder reflections — need N²/2 numbers again), so gradjax refuses ``weights="tiled"`` for
``init="orthogonal"``.

Usage:  python benchmarks/bench_density.py [--N 16384 --L 8 --k 32 --probes 4 --tile 256]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np


IN_DIM = 256  # inputs per example; h_0 = x E has variance mean(x²) for LeCun E whatever this is


def ks_distance(nodes, weights, lam, cdf_theory, lo=0.0) -> float:
    """sup |F_quad − F_theory| over σ² ≥ ``lo`` (quadrature steps at ``nodes``, theory CDF at ``lam``)."""
    keep = lam >= lo
    lam, cdf_theory = lam[keep], cdf_theory[keep]
    order = np.argsort(nodes)
    x, w = nodes[order], weights[order]
    f_quad_after = np.cumsum(w)
    f_th_at_nodes = np.interp(x, lam, cdf_theory)
    at = x >= lo
    d_nodes = max(np.max(np.abs(f_quad_after - f_th_at_nodes)[at], initial=0.0),
                  np.max(np.abs(f_quad_after - w - f_th_at_nodes)[at], initial=0.0))
    steps = np.searchsorted(x, lam, side="right")  # right-continuous steps
    f_quad_at_lam = np.concatenate([[0.0], f_quad_after])[steps]
    return float(max(d_nodes, np.max(np.abs(f_quad_at_lam - cdf_theory))))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--N", type=int, default=16384)
    p.add_argument("--L", type=int, default=8)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--probes", type=int, default=4)
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--sigma-b2", type=float, default=0.05)
    p.add_argument("--weights", default="tiled", choices=("stored", "regenerated", "tiled"))
    args = p.parse_args(argv)

    import jax
    import jax.numpy as jnp

    jax.config.update("jax_default_matmul_precision", "highest")
    from gradjax import theory
    from gradjax.config import NetConfig
    from gradjax.empirical import jacobian_spectral_density

    sw2 = float(theory.critical_sigma_w2("tanh", args.sigma_b2))
    q_star = float(theory.q_star("tanh", sw2, args.sigma_b2))
    # A small input and output layer (stored; O(N) numbers): only the blocks are N × N.
    cfg = NetConfig(depth=args.L, width=args.N, in_dim=IN_DIM, out_dim=1, activation="tanh", sigma_w2=sw2,
                    sigma_b2=args.sigma_b2, dtype="float32")
    # Inputs of mean square q*: h_0 = x E (LeCun E) then has variance q*, the fixed point, in every layer.
    x = jax.random.normal(jax.random.key(7), (1, IN_DIM), jnp.float32)
    x = x / jnp.sqrt(jnp.mean(x**2)) * jnp.sqrt(q_star)
    print(f"tanh MLP L={args.L}, N={args.N}, σ_w²={sw2:.6f} (critical for σ_b²={args.sigma_b2}), q*={q_star:.6f}; "
          f"weights={args.weights!r}, tile={args.tile}, k={args.k}, probes={args.probes}; jax {jax.__version__}, "
          f"{jax.default_backend()}")
    t0 = time.perf_counter()
    q = jacobian_spectral_density(cfg, 1, inputs=x, layers="end", k=args.k, probes=args.probes, weights=args.weights,
                                  tile=args.tile if args.weights == "tiled" else None)
    nodes = np.asarray(q.log10_sv[0, 0], np.float64)
    w = np.asarray(q.weights[0, 0], np.float64)
    dt = time.perf_counter() - t0
    lam_nodes = np.where(np.isfinite(nodes), 10.0 ** (2 * nodes), 0.0)
    th = theory.jacobian_density(cfg, q0=q_star)
    lam = np.asarray(th.grid, np.float64)
    cdf = np.cumsum(np.asarray(th.weights * th.density, np.float64)) + float(th.atom_mass) * (float(th.atom_loc) <= lam)
    ks = ks_distance(lam_nodes, w, lam, cdf)
    # The quadrature works on a linear scale: the decades below its smallest node per probe are
    # lumped into that node (their CDF is only known to within its weight). Above the largest of those
    # nodes every x lies between resolved nodes (Chebyshev–Markov–Stieltjes bounds).
    lo = float(np.max(np.min(lam_nodes.reshape(args.probes, -1), axis=1)))
    ks_res = ks_distance(lam_nodes, w, lam, cdf, lo)
    f_lo = float(np.interp(lo, lam, cdf))
    mean_q, mean_th = float((w * lam_nodes).sum()), float(th.mean)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"KS distance (σ² CDF, quadrature vs free probability): {ks:.4f} over all σ², {ks_res:.4f} over the resolved "
          f"σ² ≥ {lo:.3g} (theory CDF there {f_lo:.3f}); mean σ²: measured {mean_q:.4f}, "
          f"theory χ₁^L = {mean_th:.4f}; {dt:.1f} s including compilation; peak RSS {rss:.2f} GiB "
          f"(one dense W would be {args.N**2 * 4 / 2**30:.2f} GiB)")


if __name__ == "__main__":
    main()
