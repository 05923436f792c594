"""The ``gradjax`` command."""

from __future__ import annotations

import argparse
import sys


def _demo(args) -> int:
    import jax
    import jax.numpy as jnp

    from gradjax.config import NetConfig
    from gradjax.nn import ensemble_forward, ensemble_params, input_shape

    nets = {
        "tanh  σw²=0.5 (ordered)": NetConfig(depth=30, width=256, sigma_w2=0.5),
        "tanh  σw²=1.0 (critical)": NetConfig(depth=30, width=256, sigma_w2=1.0),
        "tanh  σw²=4.0 (chaotic)": NetConfig(depth=30, width=256, sigma_w2=4.0, sigma_b2=0.3),
        "relu  He": NetConfig(depth=30, width=256, activation="relu", init="he_normal"),
    }
    print("mean squared pre-activation q_l at layers 1, 10, 20, 30 (median of 8 seeds)")
    for name, cfg in nets.items():
        p = ensemble_params(cfg, 8)
        x = jax.random.normal(jax.random.key(123), input_shape(cfg, 64))
        _, taps = ensemble_forward(cfg, p, x, taps=True)
        q = jnp.median(jnp.mean(taps.hidden**2, axis=(2, 3)), axis=0)
        print(f"  {name:28s} " + "  ".join(f"{float(q[i]):9.4g}" for i in (0, 9, 19, 29)))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="gradjax", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run the quick built-in study").set_defaults(fn=_demo)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
