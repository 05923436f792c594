"""A small GPT-style decoder in plain Flax NNX on a synthetic sequence task, measured by gradjax.

The model knows nothing of gradjax: token and position embeddings, pre-norm decoder blocks
(``nnx.MultiHeadAttention`` with a causal mask, layer norm, a GELU MLP) and a linear head. The
task: sequences of T random tokens whose second half repeats the first (predicting the second half
needs attention to look back T/2 positions). The script prints, across seeds at initialization, the
gradient profile of the residual stream after each block, the Jacobian singular-value density
between block outputs, the Hessian spectrum of the loss per block, then trains a few steps with the
gradient-flow monitor and draws its heatmap.

Usage:  python examples/gpt_sequence.py [--seeds 4 --layers 2 --width 32 --steps 100 --out results/examples]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx


class DecoderBlock(nnx.Module):
    """x + attn(ln(x)), then x + mlp(ln(x)) (pre-norm, causal)."""

    def __init__(self, width: int, heads: int, *, rngs: nnx.Rngs):
        self.ln1 = nnx.LayerNorm(width, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(num_heads=heads, in_features=width, decode=False, rngs=rngs)
        self.ln2 = nnx.LayerNorm(width, rngs=rngs)
        self.up = nnx.Linear(width, 4 * width, rngs=rngs)
        self.down = nnx.Linear(4 * width, width, rngs=rngs)

    def __call__(self, x):
        mask = nnx.make_causal_mask(jnp.ones(x.shape[:2]))
        x = x + self.attn(self.ln1(x), mask=mask)
        return x + self.down(nnx.gelu(self.up(self.ln2(x))))


class GPT(nnx.Module):
    def __init__(self, vocab: int, seq_len: int, width: int, layers: int, heads: int, *, rngs: nnx.Rngs):
        self.tokens = nnx.Embed(vocab, width, rngs=rngs)
        self.positions = nnx.Param(0.02 * jax.random.normal(rngs.params(), (seq_len, width)))
        self.blocks = nnx.List([DecoderBlock(width, heads, rngs=rngs) for _ in range(layers)])
        self.ln = nnx.LayerNorm(width, rngs=rngs)
        self.head = nnx.Linear(width, vocab, rngs=rngs)

    def __call__(self, tokens):
        x = self.tokens(tokens) + self.positions[...][None, : tokens.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


VOCAB = 16


def make_model(rngs: nnx.Rngs, layers: int = 2, width: int = 32, seq_len: int = 16, heads: int = 4) -> GPT:
    return GPT(VOCAB, seq_len, width, layers, heads, rngs=rngs)


def repeat_task(n: int, seq_len: int, seed: int = 0):
    """(n, T) int tokens whose second half repeats the first, and the next-token targets (n, T)."""
    rng = np.random.default_rng(seed)
    half = rng.integers(0, VOCAB, size=(n, seq_len // 2))
    x = np.concatenate([half, half], axis=1).astype(np.int32)
    return x, np.roll(x, -1, axis=1).astype(np.int32)


def next_token_xent(logits, targets):
    """Cross-entropy of the second half's predictions (the first half is unpredictable), mean in nats."""
    t = logits.shape[1]
    return optax.softmax_cross_entropy_with_integer_labels(logits[:, t // 2:-1], targets[:, t // 2:-1]).mean()


def run(args) -> dict:
    from gradjax import empirical

    from examples.common import print_profile, train_and_show_flow

    factory = lambda rngs: make_model(rngs, args.layers, args.width, args.seq_len)  # noqa: E731
    x, y = repeat_task(args.batch, args.seq_len)
    jx, jy = jnp.asarray(x), jnp.asarray(y)
    blocks = DecoderBlock  # h_l: the residual stream after each block
    labels = empirical.layer_paths(factory, jx, blocks)
    g = empirical.gradient_profile(factory, args.seeds, jx, jy, next_token_xent, layers=blocks)
    print_profile("gradient profile at init: log10 ‖∂loss/∂h_l‖ of the residual stream after each block", labels,
                  g.hidden)
    stream = lambda path: path == ("ln",) or (len(path) == 2 and path[0] == "blocks")  # noqa: E731
    jsd = empirical.jacobian_spectral_density(factory, args.seeds, jx[:2], stream, k=args.k, probes=2)
    grid = np.linspace(-4, 2, 61)
    dens = np.asarray(jsd.density(grid, 0.2)).mean(0)
    print("Jacobian ∂(final norm)/∂h_l singular-value density (median log10 σ):",
          {lab: float(grid[np.searchsorted(np.cumsum(d) / d.sum(), 0.5)]) for lab, d in
           zip(empirical.layer_paths(factory, jx[:2], stream)[:-1], dens)})
    hs = empirical.hessian_spectrum(factory, args.seeds, jx, jy, next_token_xent, layers=blocks, k=args.k, probes=2,
                                    trace_probes=8, top=3)
    print("Hessian blocks:", empirical.hessian_blocks(factory, jx, blocks))
    print("Hessian top eigenvalue per block (median over seeds):",
          np.round(np.nanmedian(np.asarray(hs.top[:, :, 0]), axis=0), 4).tolist())
    rec, losses, out = train_and_show_flow(factory(nnx.Rngs(0)), x, y, next_token_xent, steps=args.steps, lr=args.lr,
                                           path=Path(args.out) / "gpt_sequence_flow.png", title="GPT decoder: log10 ‖∂loss/∂θ‖ per module")
    return {"gradients": g, "hessian": hs, "record": rec, "losses": losses, "figure": out}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=16)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--out", default="results/examples")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    main()
