"""How much of the input survives to the pooled readout of the delta-orthogonal experiment's cnns at initialization.

For the ``delta-orthogonal`` experiment's networks (tanh at the critical point with q* = 1/L, 8×8 circular maps,
3×3 kernels; ``--sigma-b2 S``: the critical point at σ_b² = S instead) on the first 64 training digits, prints
per depth, width and init the input dependence of

* the pooled features the readout sees, g = mean over positions of φ(h_L): the std across the 64 digits,
  averaged over channels, relative to the rms of g;
* the per-position features φ(h_L): the same ratio over all positions and channels.

mean ± spread over seeds. The readout can only learn from the first; a ratio of 0.01 means the digits reach it as
1% perturbations of one common vector. At σ_b² = 0.05 (q* = 0.57) it falls to 0.02–0.03 by 128 layers for either
init, which is why 200–1,000 Adam updates left 128-layer networks there at chance; at q* = 1/L it stays large
(``gradjax/experiments/delta_orthogonal.py``, sizes):

    PYTHONPATH=. python scripts/delta_orthogonal_pooled_signal.py [--depths 8 32 128] [--widths 16 64] [--seeds 4]
                                                                  [--sigma-b2 0.05]
"""

import argparse

import jax
import numpy as np

from gradjax.experiments.delta_orthogonal import _digits, config_of
from gradjax.nn.stack import forward, init_params
from gradjax.theory import critical_sigma_w2


class _Cell(dict):
    dtype = "float32"


def input_dependence(depth: int, width: int, init: str, seed: int, x, sigma_b2=None) -> tuple[float, float]:
    """(pooled, per-position) std across the digits relative to the rms, for one network."""
    cfg = config_of(_Cell(depth=depth, width=width, init=init))
    if sigma_b2 is not None:
        cfg = cfg.with_(sigma_w2=float(critical_sigma_w2("tanh", sigma_b2)), sigma_b2=sigma_b2)
    _, taps = forward(cfg, init_params(cfg, jax.random.key(seed)), x, taps=True)
    a = np.tanh(np.asarray(taps[1][-1], np.float64))  # φ(h_L), (B, positions·width)
    pooled = a.reshape(a.shape[0], -1, width).mean(1)
    return (float(pooled.std(0).mean() / np.sqrt(np.mean(pooled**2))),
            float(a.std(0).mean() / np.sqrt(np.mean(a**2))))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depths", type=int, nargs="+", default=[8, 32, 128])
    p.add_argument("--widths", type=int, nargs="+", default=[16, 64])
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--sigma-b2", type=float, default=None, help="critical point at this σ_b² instead of q* = 1/L")
    a = p.parse_args()
    x = _digits(64)
    print("depth width init             pooled (mean ± sd)   per position (mean ± sd)")
    for d in a.depths:
        for w in a.widths:
            for init in ("delta_orthogonal", "gaussian"):
                r = np.array([input_dependence(d, w, init, s, x, a.sigma_b2) for s in range(a.seeds)])
                m, s = r.mean(0), r.std(0, ddof=1)
                print(f"{d:5d} {w:5d} {init:16s} {m[0]:.4f} ± {s[0]:.4f}      {m[1]:.4f} ± {s[1]:.4f}")


if __name__ == "__main__":
    main()
