"""Speed and memory of gradjax.empirical against the naive ways of measuring the same things.

Workload W1 (issue 4): tanh MLP, L = 64, N = 512, S = 32, float32 with full-precision matmuls;
its CPU variant W1-cpu: L = 32, N = 256, S = 16 (the default here). Each method runs in its own
subprocess so that its peak resident memory (``ru_maxrss``, which includes the ~0.3–0.5 GB of the
Python + JAX runtime) is its own. Times are the median of ``--repeats`` warm calls (compilation
excluded everywhere). Every method's time includes drawing its S networks' parameters (the same
``init_params`` draw, jitted; the naive loops draw seed by seed inside the loop as a user's loop
does, the floor gets them pre-drawn). ``--predrawn`` hands the naive loops pre-drawn parameters instead.

Methods:
  draw          drawing the S networks' parameters alone (part of every gradjax time below).
  draw-jax      the same number of Gaussians drawn by jax.random.normal (threefry), as before
                gradjax.nn.sampling: the drawing speed-up.
  gradjax-end   jacobian_spectrum(layers="end", method="gram")   vs (a) naive-end: per seed, jit(jacrev) of
                h_0 → h_L + jnp.linalg.svd, in a Python loop over seeds.
  gradjax-all   jacobian_spectrum(layers="all", method="gram")   vs (b) naive-all: per seed and layer l,
                jit(jacrev) of the sub-network h_l → h_L + svd (optionally a subset of layers, extrapolated
                linearly in the number of (seed, layer) pairs: stated in the output).
  floor-all     the unavoidable parts run bare: one batched suffix-product sweep producing the S·L
                matrices (given W and φ' precomputed) + one batched eigvalsh of their Gram matrices.
  gradjax-grad  gradient_profile(batch=B)                         vs (c) naive-grad: per seed, jit(grad) of the
                loss w.r.t. parameters and per-layer probes, in a Python loop over seeds.
  torch-jacrev  PyTorch, the way most users would: per seed and layer l, torch.func.jacrev of the
                sub-network h_l → h_L + torch.linalg.svdvals (the all-layer spectra of gradjax-all).
  torch-sweep   PyTorch, hand-written: all seeds' networks drawn with torch.randn, one batched backward
                product sweep G_{l-1} = (G_l W_lᵀ) ⊙ φ'(h_{l-1}) keeping every G_l, one batched
                torch.linalg.eigvalsh of all S·L Gram matrices G_l G_lᵀ. Needs the optional extra
                ``bench`` (pip install 'gradjax[bench]'); skipped with a message where torch is absent.

Usage:  python benchmarks/bench_empirical.py [--L 32 --N 256 --S 16 --B 128] [--b-layers 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

METHODS = ("draw", "draw-jax", "gradjax-end", "naive-end", "gradjax-all", "naive-all", "floor-all", "gradjax-grad", "naive-grad",
           "torch-jacrev", "torch-sweep")
TORCH_METHODS = ("torch-jacrev", "torch-sweep")


def _setup(args):
    import jax

    jax.config.update("jax_default_matmul_precision", "highest")  # "full precision matmuls" of W1
    from gradjax.config import NetConfig

    return NetConfig(depth=args.L, width=args.N, activation="tanh", sigma_w2=1.5, sigma_b2=0.05, dtype="float32")


def _time(fn, repeats):
    import jax

    jax.block_until_ready(fn())  # compile / warm up
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def run_torch(args) -> dict:
    """The PyTorch peers of ``gradjax-all``: the same tanh MLP (LeCun input layer, W ~ N(0, σ_w²/N),
    b ~ N(0, σ_b²)), each method drawing its own S networks (torch.randn), float32, on the CPU."""
    import torch

    S, L, N, sw2, sb2 = args.S, args.L, args.N, 1.5, 0.05
    torch.manual_seed(0)

    def draw():
        return (torch.randn(S, L, N, N) * (sw2 / N) ** 0.5, torch.randn(S, L, N) * sb2**0.5,
                torch.randn(S, N, N) / N**0.5, torch.randn(S, 1, N))

    def forward(W, b, emb, x):  # h_l = tanh(h_{l-1}) W_l + b_l; returns the inputs h_0..h_{L-1} of the blocks
        h = x @ emb
        hs = []
        for l in range(L):
            hs.append(h)
            h = torch.tanh(h) @ W[:, l] + b[:, l, None, :]
        return hs

    def jacrev_all():
        W, b, emb, x = draw()
        hs = forward(W, b, emb, x)
        out = []
        for k in range(S):
            for lo in range(L):
                def sub(v, k=k, lo=lo):
                    for l in range(lo, L):
                        v = torch.tanh(v) @ W[k, l] + b[k, l]
                    return v

                j = torch.func.jacrev(sub)(hs[lo][k, 0])
                out.append(torch.log10(torch.linalg.svdvals(j)))
        return torch.stack(out)

    def sweep_all():
        W, b, emb, x = draw()
        hs = forward(W, b, emb, x)
        G = torch.eye(N).expand(S, N, N)
        grams = []
        for l in range(L - 1, -1, -1):  # G_l = ∂h_L/∂h_l; G_{l-1} = (G_l W_lᵀ) ⊙ φ'(h_{l-1})
            G = (G @ W[:, l].transpose(1, 2)) * (1 - torch.tanh(hs[l]) ** 2)
            grams.append(G @ G.transpose(1, 2))
        lam = torch.linalg.eigvalsh(torch.stack(grams, 1))
        return 0.5 * torch.log10(lam.clamp_min(0))

    fn = {"torch-jacrev": jacrev_all, "torch-sweep": sweep_all}[args.method]
    with torch.no_grad() if args.method == "torch-sweep" else torch.enable_grad():
        fn()  # warm-up, as for the jitted methods
        ts = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    note = {"torch-jacrev": "torch.func.jacrev + svdvals per seed and layer, draws included",
            "torch-sweep": "hand-written batched backward sweep + batched eigvalsh of the S·L Grams, draws included"}
    return {"method": args.method, "seconds": statistics.median(ts),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak_device_mib": None,
            "note": f"{note[args.method]}; torch {torch.__version__}, {torch.get_num_threads()} threads"}


def run_method(args) -> dict:
    import jax
    import jax.numpy as jnp

    from gradjax.empirical import gradient_profile, jacobian_spectrum
    from gradjax.empirical.jacobians import eigvalsh
    from gradjax.empirical.losses import loss_fn
    from gradjax.nn import seed_keys
    from gradjax.nn.blocks import block_apply
    from gradjax.nn.stack import init_params, readout, unroll

    cfg = _setup(args)
    m, S, L, N, B = args.method, args.S, args.L, args.N, args.B
    note = ""
    if m == "draw":  # what every other method spends drawing its S networks, timed alone
        draw_all = jax.jit(lambda ks: jax.lax.map(lambda key: init_params(cfg, key), ks))  # seed by seed, as gradjax on CPU
        keys = seed_keys(S)
        t = _time(lambda: draw_all(keys), args.repeats)
        note = "drawing the S networks' parameters alone (jit(lax.map(init_params)))"
    elif m == "draw-jax":
        count = L * N * N + 2 * N * N + (L + 2) * N  # the blocks' kernels and biases, input layer, readout
        draw_all = jax.jit(lambda ks: jax.lax.map(lambda key: jax.random.normal(key, (count,)), ks))
        t = _time(lambda: draw_all(seed_keys(S)), args.repeats)
        note = f"{count} Gaussians per network by jax.random.normal (the drawing before gradjax.nn.sampling)"
    elif m == "gradjax-end":
        t = _time(lambda: jacobian_spectrum(cfg, S, layers="end"), args.repeats)
    elif m == "gradjax-all":
        t = _time(lambda: jacobian_spectrum(cfg, S, layers="all"), args.repeats)
    elif m == "gradjax-grad":
        t = _time(lambda: gradient_profile(cfg, S, batch=B).hidden, args.repeats)
    else:
        keys = seed_keys(S)
        draw = jax.jit(lambda key: init_params(cfg, key))
        if args.predrawn or m == "floor-all":
            # Seed by seed (the same values as one vmapped draw, without its temporaries).
            params = jax.tree.map(lambda *a: jnp.stack(a), *[draw(keys[k]) for k in range(S)])
            member = lambda k: jax.tree.map(lambda a: a[k], params)  # noqa: E731
        else:
            member = lambda k: draw(keys[k])  # noqa: E731
            note = "draws its parameters seed by seed"
        xs1 = jax.random.normal(jax.random.key(1), (S, 1, N))
        blocks = lambda p, h, lo: [h := block_apply(cfg, jax.tree.map(lambda a: a[i], p["blocks"]), h) for i in range(lo, L)][-1]  # noqa: E731

        if m == "naive-end":
            @jax.jit
            def one(p, x):
                h0 = unroll(cfg, p, x)[0]
                j = jax.jacrev(lambda h: blocks(p, h[None], 0)[0])(h0[0])
                return jnp.linalg.svd(j, compute_uv=False)

            t = _time(lambda: [one(member(k), xs1[k]) for k in range(S)], args.repeats)
        elif m == "naive-all":
            layers = list(range(L)) if args.b_layers is None else sorted({round(i * (L - 1) / max(1, args.b_layers - 1)) for i in range(args.b_layers)})
            fns = {}
            for lo in layers:
                @jax.jit
                def one(p, x, lo=lo):
                    h = unroll(cfg, p, x)[0]
                    if lo:
                        h = blocks({"blocks": jax.tree.map(lambda a: a[:lo], p["blocks"])}, h, 0) if lo < L else h
                    j = jax.jacrev(lambda v: blocks(p, v[None], lo)[0])(h[0])
                    return jnp.linalg.svd(j, compute_uv=False)

                fns[lo] = one
            # Each seed's network is drawn once and serves all its layers: time the draws and the
            # per-layer work apart, so that only the latter is extrapolated to all L layers.
            drawn = [member(k) for k in range(S)]
            t = _time(lambda: [fns[lo](drawn[k], xs1[k]) for k in range(S) for lo in layers], args.repeats)
            if len(layers) < L:
                note += f"; timed {len(layers)} of {L} layers ({layers}), extrapolated ×{L / len(layers):.2f}"
                t *= L / len(layers)
            if not args.predrawn:
                t += _time(lambda: [member(k) for k in range(S)], args.repeats)
        elif m == "floor-all":
            note = "parameters pre-drawn"
            # The unavoidable work given W_l and φ'(preact_l): G_{l-1} = (G_l ⊙ φ') W_lᵀ for every seed
            # (one batched matmul per layer), then one batched eigvalsh of all S·L Gram matrices, with
            # the same values-only eigen routine gradjax uses (LAPACK jobz='N' on CPU).
            W = params["blocks"]["kernel"]  # (S, L, N, N)
            d = 1.0 - jnp.tanh(jax.random.normal(jax.random.key(2), (S, L, N))) ** 2

            @jax.jit
            def floor(W, d):
                def body(G, wd):
                    w, dd = wd
                    G = jnp.einsum("sij,skj->sik", G * dd[:, None, :], w)
                    return G, G

                G0 = jnp.broadcast_to(jnp.eye(N, dtype=W.dtype), (S, N, N))
                _, Gs = jax.lax.scan(body, G0, (jnp.swapaxes(W, 0, 1), jnp.swapaxes(d, 0, 1)), reverse=True)
                gram = jnp.einsum("lsij,lskj->lsik", Gs, Gs)
                return eigvalsh(gram)

            t = _time(lambda: floor(W, d), args.repeats)
        elif m == "naive-grad":
            x = jax.random.normal(jax.random.key(3), (S, B, N))
            tg = jax.random.normal(jax.random.key(4), (S, B, N))

            @jax.jit
            def one(p, x, tt):
                def f(p, eps):
                    h = unroll(cfg, p, x)[0]
                    for i in range(L):
                        h = block_apply(cfg, jax.tree.map(lambda a: a[i], p["blocks"]), h) + eps[i]
                    return loss_fn("mse")(readout(cfg, p, h), tt)

                gp, ge = jax.grad(f, argnums=(0, 1))(p, jnp.zeros((L, B, N)))
                return (jnp.log10(jnp.sqrt(jnp.sum(ge**2, axis=(1, 2)))),
                        jnp.log10(jnp.sqrt(jnp.sum(gp["blocks"]["kernel"] ** 2, axis=(1, 2)))))

            t = _time(lambda: [one(member(k), x[k], tg[k]) for k in range(S)], args.repeats)
        else:
            raise ValueError(f"method must be one of {list(METHODS)}, got {m!r}")
    stats = jax.devices()[0].memory_stats() or {}  # accelerators: the device's own peak (CPU: none)
    peak_dev = stats.get("peak_bytes_in_use")
    return {"method": m, "seconds": t, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_device_mib": None if peak_dev is None else peak_dev / 2**20, "note": note}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--L", type=int, default=32)
    p.add_argument("--N", type=int, default=256)
    p.add_argument("--S", type=int, default=16)
    p.add_argument("--B", type=int, default=128, help="batch of the gradient profiles (W1: 128)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--b-layers", type=int, default=None, help="time naive-all on this many layers and extrapolate")
    p.add_argument("--predrawn", action="store_true", help="hand the naive loops pre-drawn parameters")
    p.add_argument("--method", choices=METHODS, default=None, help="run one method (used by the driver)")
    p.add_argument("--methods", default=",".join(METHODS))
    args = p.parse_args(argv)
    if args.method:
        print(json.dumps(run_torch(args) if args.method in TORCH_METHODS else run_method(args)))
        return
    import jax

    rows = {}
    base = ["--L", str(args.L), "--N", str(args.N), "--S", str(args.S), "--B", str(args.B), "--repeats", str(args.repeats)]
    base += [] if args.b_layers is None else ["--b-layers", str(args.b_layers)]
    base += ["--predrawn"] if args.predrawn else []
    import importlib.util

    for m in args.methods.split(","):
        if m in TORCH_METHODS and importlib.util.find_spec("torch") is None:
            print(f"{m:14s} skipped: PyTorch is not installed (pip install 'gradjax[bench]', which pins torch)", flush=True)
            continue
        load = os.getloadavg()[0]
        out = subprocess.run([sys.executable, __file__, "--method", m] + base, capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))})
        if out.returncode:
            print(out.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"{m} failed")
        rows[m] = json.loads(out.stdout.strip().splitlines()[-1])
        rows[m]["load"] = f"{load:.1f}–{os.getloadavg()[0]:.1f}"  # 1-min load average before – after
        print(f"{m:14s} {rows[m]['seconds']:9.3f} s  peak RSS {rows[m]['peak_rss_mib']:7.0f} MiB  load {rows[m]['load']}  "
              f"{rows[m]['note']}", flush=True)

    def ratio(a, b):
        return f"{rows[a]['seconds'] / rows[b]['seconds']:.2f}×" if a in rows and b in rows else "—"

    print()
    print(f"W: L={args.L}, N={args.N}, S={args.S}, B={args.B}, float32, matmul precision highest; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__}, "
          f"backend {jax.default_backend()}, python {platform.python_version()}")
    print()
    dev = any(r.get("peak_device_mib") is not None for r in rows.values())
    print("| method | time (s) | peak RSS (MiB) |" + (" peak device memory (MiB) |" if dev else "") + " load | note |")
    print("|---|---:|---:|" + ("---:|" if dev else "") + "---|---|")
    for m, r in rows.items():
        cell = "" if not dev else f" {r['peak_device_mib']:.0f} |" if r.get("peak_device_mib") is not None else " — |"
        print(f"| {m} | {r['seconds']:.3f} | {r['peak_rss_mib']:.0f} |{cell} {r['load']} | {r['note']} |")
    print()
    print(f"- end-to-end: naive (a) / gradjax = {ratio('naive-end', 'gradjax-end')} (target ≥ 5× on CPU)")
    print(f"- all layers: naive (b) / gradjax = {ratio('naive-all', 'gradjax-all')} (target ≥ 25×); "
          f"gradjax / floor = {ratio('gradjax-all', 'floor-all')} (target ≤ 1.3×)")
    if "draw" in rows and "gradjax-all" in rows and "floor-all" in rows:
        net = rows["gradjax-all"]["seconds"] - rows["draw"]["seconds"]
        print(f"- all layers without drawing: gradjax − draw = {net:.3f} s = {net / rows['floor-all']['seconds']:.2f}× floor")
    print(f"- gradients: naive (c) / gradjax = {ratio('naive-grad', 'gradjax-grad')} (target ≥ 1× on CPU)")
    print(f"- PyTorch: gradjax-all / torch-sweep = {ratio('gradjax-all', 'torch-sweep')} (target ≤ 0.75×); "
          f"torch-jacrev / gradjax-all = {ratio('torch-jacrev', 'gradjax-all')}")
    if "draw" in rows and "gradjax-all" in rows:
        print(f"- drawing: draw / gradjax-all = {rows['draw']['seconds'] / rows['gradjax-all']['seconds']:.2f} (target ≤ 0.25)")


if __name__ == "__main__":
    main()
