"""Memory of the all-layer Jacobian spectra at a size where the plain way does not fit.

Issue 4's memory test: S = 64, N = 1024, L = 128 (tanh MLP, float32). The plain way — one
``vmap`` over seeds of ``jax.jacfwd`` of h_L with respect to a perturbation of every h_l — holds all
S·L Jacobians at once (64·128·1024² float32 = 32 GiB) plus its tangents. This script

1. compiles that plain program (without running it) and reads XLA's own memory analysis of it
   (arguments + outputs + temporaries), and
2. runs ``gradjax.empirical.jacobian_spectrum(cfg, S, layers="all")`` (chunked over seeds under its
   ``max_bytes`` budget) and reports its wall time and peak memory: the device's
   ``peak_bytes_in_use`` on an accelerator, the process's peak resident set on CPU.

With ``--weights regenerated`` the weights are never stored: each W_l is drawn from its key inside
the forward and again inside the backward sweep, and each layer's spectrum is taken inside the sweep.

Usage:  python benchmarks/bench_memory.py [--L 128 --N 1024 --S 64] [--no-run] [--weights regenerated]
"""

from __future__ import annotations

import argparse
import resource
import time


def plain_vmap_jacfwd(cfg):
    """The plain all-layer program: (S, N, L, N) Jacobians ∂h_L/∂h_l for every seed at once."""
    import jax
    import jax.numpy as jnp

    from gradjax.nn.blocks import block_apply
    from gradjax.nn.stack import unroll

    def one(p, x):
        h0 = unroll(cfg, p, x)[0][0]

        def h_last(eps):  # eps (L, N): h_l + eps_l enters block l+1, so ∂h_L/∂eps_l = ∂h_L/∂h_l
            def body(h, inp):
                blk, e = inp
                return block_apply(cfg, blk, (h + e)[None])[0], None

            return jax.lax.scan(body, h0, (p["blocks"], eps))[0]

        return jax.jacfwd(h_last)(jnp.zeros((cfg.depth, cfg.width), cfg.jnp_dtype))

    return jax.jit(jax.vmap(one))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--L", type=int, default=128)
    p.add_argument("--N", type=int, default=1024)
    p.add_argument("--S", type=int, default=64)
    p.add_argument("--no-run", action="store_true", help="only the compile-time analysis of the plain program")
    p.add_argument("--weights", default="stored", choices=("stored", "regenerated"),
                   help="regenerated: each W_l drawn from its key inside the sweeps (O(N²) per seed, not O(L·N²))")
    args = p.parse_args(argv)

    import jax

    jax.config.update("jax_default_matmul_precision", "highest")
    from gradjax.config import NetConfig
    from gradjax.empirical import jacobian_spectrum
    from gradjax.empirical._seeds import default_max_bytes
    from gradjax.empirical._seeds import format_bytes as fmt
    from gradjax.nn import seed_keys
    from gradjax.nn.stack import init_params, input_shape

    cfg = NetConfig(depth=args.L, width=args.N, activation="tanh", sigma_w2=1.5, sigma_b2=0.05, dtype="float32")
    S = args.S
    dev = jax.devices()[0]
    print(f"L={args.L}, N={args.N}, S={S}, float32; device {dev.device_kind} ({jax.default_backend()}), jax {jax.__version__}")

    params = jax.eval_shape(jax.vmap(lambda k: init_params(cfg, k)), seed_keys(S))
    x = jax.ShapeDtypeStruct((S,) + input_shape(cfg, 1), cfg.jnp_dtype)
    t0 = time.perf_counter()
    mem = plain_vmap_jacfwd(cfg).lower(params, x).compile().memory_analysis()
    need = mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
    print(f"plain vmap(jacfwd): XLA memory analysis (compiled in {time.perf_counter() - t0:.1f} s, not run): "
          f"arguments {fmt(mem.argument_size_in_bytes)}, outputs {fmt(mem.output_size_in_bytes)}, "
          f"temporaries {fmt(mem.temp_size_in_bytes)}, total {fmt(need)}")
    stats = dev.memory_stats() or {}
    if "bytes_limit" in stats:
        print(f"device memory limit {fmt(stats['bytes_limit'])}: the plain program "
              f"{'does not fit' if need > stats['bytes_limit'] else 'fits'}")
    if args.no_run:
        return
    print(f"gradjax max_bytes budget per chunk (default): {fmt(default_max_bytes())}")
    t0 = time.perf_counter()
    out = jax.block_until_ready(jacobian_spectrum(cfg, S, layers="all", weights=args.weights))
    dt = time.perf_counter() - t0
    stats = dev.memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    where = f"device peak {fmt(peak)}" if peak is not None else f"process peak RSS {fmt(rss)}"
    finite = float(jax.numpy.isfinite(out).mean())
    print(f"gradjax jacobian_spectrum(layers='all', weights={args.weights!r}): output {tuple(out.shape)}, {finite:.3f} finite, "
          f"{dt:.1f} s (incl. compilation), {where}")


if __name__ == "__main__":
    main()
