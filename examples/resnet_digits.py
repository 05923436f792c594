"""A small ResNet in plain Flax NNX on the 8×8 digits images, measured by gradjax without changes.

The model below knows nothing of gradjax: convolutions, batch norm (batch statistics, as in
training) and identity skips. The script prints, across seeds at initialization, the gradient
profile of every convolution and of the classifier, the Jacobian singular-value density of the
residual blocks' outputs and the Hessian spectrum of the loss, then trains for a few steps with the
gradient-flow monitor in the optax chain and draws its layer × step heatmap.

Usage:  python examples/resnet_digits.py [--seeds 4 --blocks 2 --channels 8 --steps 100 --out results/examples]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx


class ResBlock(nnx.Module):
    """relu(x + bn(conv(relu(bn(conv(x))))))."""

    def __init__(self, channels: int, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(channels, channels, (3, 3), rngs=rngs)
        self.bn1 = nnx.BatchNorm(channels, rngs=rngs)
        self.conv2 = nnx.Conv(channels, channels, (3, 3), rngs=rngs)
        self.bn2 = nnx.BatchNorm(channels, rngs=rngs)

    def __call__(self, x):
        h = nnx.relu(self.bn1(self.conv1(x)))
        return nnx.relu(x + self.bn2(self.conv2(h)))


class ResNet(nnx.Module):
    """Stem convolution, ``blocks`` residual blocks, global average pooling, a linear classifier."""

    def __init__(self, blocks: int, channels: int, classes: int = 10, *, rngs: nnx.Rngs):
        self.stem = nnx.Conv(1, channels, (3, 3), rngs=rngs)
        self.blocks = nnx.List([ResBlock(channels, rngs=rngs) for _ in range(blocks)])
        self.head = nnx.Linear(channels, classes, rngs=rngs)

    def __call__(self, x):
        h = nnx.relu(self.stem(x))
        for block in self.blocks:
            h = block(h)
        return self.head(jnp.mean(h, axis=(1, 2)))


def make_model(rngs: nnx.Rngs, blocks: int = 2, channels: int = 8) -> ResNet:
    return ResNet(blocks, channels, rngs=rngs)


def digits(n: int):
    """The first n digits images as (n, 8, 8, 1) float32 scaled to [0, 1], and their labels (n,)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images[:n, :, :, None] / 16.0).astype(np.float32), d.target[:n].astype(np.int32)


def xent(y, labels):
    return optax.softmax_cross_entropy_with_integer_labels(y, labels).mean()


def run(args) -> dict:
    from gradjax import empirical

    from examples.common import print_profile, train_and_show_flow

    factory = lambda rngs: make_model(rngs, args.blocks, args.channels)  # noqa: E731
    x, y = digits(args.batch)
    jx, jy = jnp.asarray(x), jnp.asarray(y)
    labels = empirical.layer_paths(factory, jx)
    g = empirical.gradient_profile(factory, args.seeds, jx, jy, xent)
    print_profile("gradient profile at init: log10 ‖∂loss/∂h_l‖ across seeds (conv and linear outputs)", labels, g.hidden)
    is_block = lambda path: len(path) == 2 and path[0] == "blocks"  # noqa: E731
    sel = lambda path: path == ("stem",) or is_block(path)  # noqa: E731
    jsd = empirical.jacobian_spectral_density(factory, args.seeds, jx[:4], sel, k=args.k, probes=2)
    grid = np.linspace(-4, 2, 61)
    dens = np.asarray(jsd.density(grid, 0.2)).mean(0)
    print("Jacobian ∂h_L/∂h_l singular-value density (median log10 σ):",
          {lab: float(grid[np.searchsorted(np.cumsum(d) / d.sum(), 0.5)]) for lab, d in
           zip(empirical.layer_paths(factory, jx[:4], sel)[:-1], dens)})
    hs = empirical.hessian_spectrum(factory, args.seeds, jx, jy, xent, layers=(nnx.Conv, nnx.Linear), k=args.k,
                                    probes=2, trace_probes=8, top=3)
    print("Hessian top eigenvalues (whole network, per seed):", np.round(np.asarray(hs.top[:, 0]), 4).tolist())
    print("Hessian trace (whole network, per seed): ", np.round(np.asarray(hs.trace[:, 0]), 4).tolist())
    rec, losses, out = train_and_show_flow(factory(nnx.Rngs(0)), x, y, xent, steps=args.steps, lr=args.lr,
                                           path=Path(args.out) / "resnet_digits_flow.png", title="ResNet on digits: log10 ‖∂loss/∂θ‖ per layer")
    return {"gradients": g, "hessian": hs, "record": rec, "losses": losses, "figure": out}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--out", default="results/examples")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    main()
