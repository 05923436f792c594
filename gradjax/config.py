"""``NetConfig``: one network of the zoo, as a frozen, self-validating dataclass and a JAX pytree.

A config's *structure* (arch, depth, width, activation name, init, norm, dtype, …) is static; its
*numbers* — σ_w², σ_b², the residual scale α and the leaky / prelu slope — are pytree leaves. So a
config passes to ``jax.jit`` as an ordinary argument (one compilation per structure, whatever the
numbers) and the numbers can be traced::

    sw2 = jnp.linspace(0.5, 4.0, 64)
    jax.vmap(lambda s: gradjax.theory.gradient_profile(cfg.with_(sigma_w2=s)))(sw2)   # (64, L)

Every bad value raises ``ValueError`` or ``TypeError`` naming the field, the value and what is
allowed; nothing is silently replaced. A traced number is checked for what a tracer can say (a real
scalar); its value is checked where it is concrete. Fields left at ``None`` are *resolved* on
construction to the value that applies (e.g. ``in_dim`` → ``width``; ``sigma_w2`` → 1.0 for
``gaussian``, 2.0 for ``he_normal``), so that ``cfg.sigma_w2`` is always the effective weight
variance σ_w² = fan_in·Var(W) of the N×N blocks.

This module imports nothing from gradjax but the validation helpers and the names it validates
against (``gradjax.names``); the functions behind those names live in ``gradjax.nn``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Union

import jax
import jax.numpy as jnp

from gradjax._validate import check_choice, check_int, check_real, is_traced, real_number
from gradjax.names import ACTIVATION_NAMES, INIT_NAMES, SCALED, SLOPED, default_slope, weight_sigma_w2

#: Archs whose state is one width-N vector per example (the dense zoo).
DENSE_ARCHS = ("mlp", "resmlp", "rnn")
ARCHS = DENSE_ARCHS + ("cnn", "transformer")
NORMS = ("none", "batchnorm", "layernorm", "rmsnorm")
NORM_POSITIONS = ("pre", "post")
DTYPES = ("float32", "float64")
RESIDUAL_SCALE_RULES = ("1/sqrt(L)",)
#: residual_scale of a transformer without skip connections (pure attention / MLP blocks).
NO_SKIP = "none"
#: Weight schemes of a cnn's convolution kernels (delta_orthogonal: Xiao et al. 2018, arXiv:1806.05393).
CNN_INITS = ("gaussian", "delta_orthogonal")
#: Schemes whose σ_w² is set by the config (the others fix the variance themselves).
SCALED_INITS = SCALED + ("delta_orthogonal",)
_CNN_NORMS = ("none",)
_TRANSFORMER_NORMS = ("none", "layernorm", "rmsnorm")
DEFAULT_KERNEL_SIZE = 3
#: Fields that exist for one arch only (None elsewhere), with the arch.
_ARCH_FIELDS = {"spatial": "cnn", "kernel_size": "cnn", "tokens": "transformer", "heads": "transformer",
                "mlp": "transformer"}
_RNN_NORMS = ("none", "layernorm", "rmsnorm")  # batch statistics shared across time steps are ill-defined
#: Examples per network where theory and measurement take a batch (``batch=`` of the gradient profiles on
#: both sides): one default, so that the pair compares at the same batch without being told.
DEFAULT_BATCH = 64
#: Which weights the backward pass goes through where theory and measurement take ``backward=`` (the gradient
#: profiles and spread): the network's own (the gradient), or independent copies of them (gradient independence).
BACKWARDS = ("shared", "independent")


#: The numbers of a config: pytree leaves (traceable); every other field is structure (static).
NUMBER_FIELDS = ("sigma_w2", "sigma_b2", "residual_scale", "leaky_slope")


@dataclasses.dataclass(frozen=True)
class NetConfig:
    """One network: a stack of ``depth`` blocks of width ``width``.

    Blocks carry the pre-activation ``h_l`` (shape (B, N)) from one to the next:

    * ``mlp``:    ``h_l = W_l φ(h_{l-1}) + b_l``
    * ``resmlp``: ``h_l = h_{l-1} + α (W_l φ(h_{l-1}) + b_l)``
    * ``rnn``:    ``h_t = W φ(h_{t-1}) + U x_t + b`` (weights shared over the ``depth`` time steps;
      this is the vanilla RNN s_t = φ(W s_{t-1} + U x_t + b) written in its pre-activation a_t)
    * ``cnn``:    ``h_l = W_l ∗ φ(h_{l-1}) + b_l``, a circular convolution of a feature map of shape
      ``spatial + (width,)`` with a ``kernel_size``^d kernel (see ``gradjax.nn.conv``)
    * ``transformer``: ``tokens`` tokens of width N through softmax attention (``heads`` heads) and,
      with ``mlp=True``, an MLP, each a branch ``h + α·branch(norm(h))`` (pre) or
      ``norm(h + α·branch(h))`` (post); ``residual_scale="none"`` drops the skip (see ``gradjax.nn.attention``)

    The state carried from block to block is flattened per example: ``h_l`` has shape (B, D) with
    ``D = state_size`` = N (mlp/resmlp/rnn), prod(spatial)·N (cnn), tokens·N (transformer).

    with an input layer ``h_0 = x W_in + b_in`` (mlp/resmlp; ``h_0 = 0`` for rnn) and a readout
    ``y = φ(h_L) W_out + b_out``. A norm (if any) normalizes the block's input (``pre``) or its
    output (``post``).

    Attributes:
      arch: "mlp" | "resmlp" | "rnn".
      depth: number of blocks L (time steps for rnn), integer ≥ 1.
      width: hidden width N, integer ≥ 1.
      in_dim, out_dim: input / output sizes (default: width).
      activation: registry name, see ``gradjax.nn.activations.ACTIVATIONS``.
      init: weight scheme of the blocks, see ``gradjax.nn.init.INITIALIZERS``.
      sigma_w2: effective weight variance σ_w² (fan_in·Var W); set it only for gaussian/orthogonal.
      sigma_b2: bias variance σ_b² (biases ~ N(0, σ_b²)).
      norm: "none" | "batchnorm" | "layernorm" | "rmsnorm".
      norm_position: "pre" | "post".
      residual_scale: branch scale α of resmlp and transformer, a positive number or "1/sqrt(L)";
        transformer also "none" (no skip connection).
      spatial: cnn only: the feature map's spatial shape, (H, W) or (T,).
      kernel_size: cnn only: odd kernel size k ≤ every spatial size (default 3).
      tokens: transformer only: number of tokens T.
      heads: transformer only: attention heads (default 1), dividing ``width``.
      mlp: transformer only: whether each block has an MLP after the attention (default True).
      leaky_slope: negative-side slope of leaky_relu (default 0.01) or initial slope of prelu (0.25).
      dtype: "float32" | "float64" (float64 needs ``jax.config.update("jax_enable_x64", True)``).

    The numbers (:data:`NUMBER_FIELDS`) are pytree leaves; ``residual_scale`` given as a rule
    ("1/sqrt(L)", "none") is structure (α then follows from the static depth).
    """

    depth: int
    width: int
    arch: str = "mlp"
    in_dim: int | None = None
    out_dim: int | None = None
    activation: str = "tanh"
    init: str = "gaussian"
    sigma_w2: float | None = None
    sigma_b2: float = 0.0
    norm: str = "none"
    norm_position: str = "pre"
    residual_scale: Union[float, str, None] = None
    leaky_slope: float | None = None
    dtype: str = "float32"
    spatial: tuple | None = None
    kernel_size: int | None = None
    tokens: int | None = None
    heads: int | None = None
    mlp: bool | None = None

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 — frozen dataclass
        check_choice("arch", self.arch, ARCHS)
        check_int("depth", self.depth)
        check_int("width", self.width)
        for f in ("in_dim", "out_dim"):
            v = getattr(self, f)
            if v is None:
                set_(f, int(self.width))
            else:
                check_int(f, v)
        for f in ("depth", "width", "in_dim", "out_dim"):
            set_(f, int(getattr(self, f)))
        check_choice("activation", self.activation, ACTIVATION_NAMES)
        if self.arch == "cnn":
            check_choice("init (for arch='cnn')", self.init, CNN_INITS)
        else:
            check_choice("init", self.init, INIT_NAMES)
        check_choice("norm", self.norm, NORMS)
        check_choice("norm_position", self.norm_position, NORM_POSITIONS)
        check_choice("dtype", self.dtype, DTYPES)
        if self.dtype == "float64" and not jax.config.jax_enable_x64:
            raise ValueError(
                "dtype='float64' needs 64-bit JAX: call jax.config.update('jax_enable_x64', True) "
                "before building the config (or use dtype='float32')"
            )

        # Weight variance: explicit only where the scheme takes it.
        if self.sigma_w2 is None:  # the scheme's own variance; the scaled schemes default to 1
            set_("sigma_w2", 1.0 if self.init == "delta_orthogonal" else weight_sigma_w2(self.init, self.width, self.width))
        else:
            check_real("sigma_w2", self.sigma_w2, minimum=0.0, strict=True)
            set_("sigma_w2", real_number("sigma_w2", self.sigma_w2))
            if self.init not in SCALED_INITS:
                effective = weight_sigma_w2(self.init, self.width, self.width)
                if is_traced(self.sigma_w2) or not math.isclose(self.sigma_w2, effective, rel_tol=1e-12):
                    raise ValueError(
                        f"sigma_w2 does not apply to init={self.init!r} (its variance is fixed: σ_w² = {effective}), "
                        f"got sigma_w2={self.sigma_w2!r}; use init in {list(SCALED)} to set the scale"
                    )
        check_real("sigma_b2", self.sigma_b2, minimum=0.0)
        set_("sigma_b2", real_number("sigma_b2", self.sigma_b2))

        # Activation parameter.
        if self.activation in SLOPED:
            if self.leaky_slope is None:
                set_("leaky_slope", default_slope(self.activation))
            check_real("leaky_slope", self.leaky_slope, minimum=None)
            set_("leaky_slope", real_number("leaky_slope", self.leaky_slope))
        elif self.leaky_slope is not None:
            raise ValueError(
                f"leaky_slope applies only to activation in {list(SLOPED)}, got leaky_slope={self.leaky_slope!r} "
                f"with activation={self.activation!r}"
            )

        # Residual branch scale.
        if self.arch in ("resmlp", "transformer"):
            a = 1.0 if self.residual_scale is None else self.residual_scale
            if isinstance(a, str):
                rules = RESIDUAL_SCALE_RULES + ((NO_SKIP,) if self.arch == "transformer" else ())
                check_choice("residual_scale", a, rules)
            else:
                check_real("residual_scale", a, minimum=0.0, strict=True)
                a = real_number("residual_scale", a)
            set_("residual_scale", a)
        elif self.residual_scale is not None:
            raise ValueError(
                f"residual_scale applies only to arch in ['resmlp', 'transformer'], got residual_scale={self.residual_scale!r} "
                f"with arch={self.arch!r}"
            )

        if self.arch == "rnn" and self.norm not in _RNN_NORMS:
            raise ValueError(
                f"norm={self.norm!r} does not apply to arch='rnn' (batch statistics shared across time "
                f"steps); allowed for rnn: {list(_RNN_NORMS)}"
            )
        self._check_arch_fields(set_)

    def _check_arch_fields(self, set_) -> None:
        """Validates (and resolves the defaults of) the fields of cnn and transformer."""
        for f, arch in _ARCH_FIELDS.items():
            if self.arch != arch and getattr(self, f) is not None:
                raise ValueError(f"{f} applies only to arch={arch!r}, got {f}={getattr(self, f)!r} with arch={self.arch!r}")
        if self.arch == "cnn":
            sp = self.spatial
            if not isinstance(sp, (tuple, list)) or len(sp) not in (1, 2):
                raise ValueError(f"spatial must be a tuple (H, W) or (T,) of ints >= 1 for arch='cnn', got {sp!r}")
            for v in sp:
                check_int("spatial", v)
            set_("spatial", tuple(int(v) for v in sp))
            k = DEFAULT_KERNEL_SIZE if self.kernel_size is None else self.kernel_size
            check_int("kernel_size", k)
            if k % 2 == 0 or k > min(self.spatial):
                raise ValueError(f"kernel_size must be odd and <= every spatial size {self.spatial}, got {k!r}")
            set_("kernel_size", int(k))
            check_choice("norm (for arch='cnn')", self.norm, _CNN_NORMS)
        if self.arch == "transformer":
            check_int("tokens", self.tokens)
            heads = 1 if self.heads is None else self.heads
            check_int("heads", heads)
            if self.width % heads:
                raise ValueError(f"heads must divide width={self.width}, got heads={heads!r}")
            mlp = True if self.mlp is None else self.mlp
            if not isinstance(mlp, bool):
                raise TypeError(f"mlp must be True or False, got {mlp!r}")
            check_choice("norm (for arch='transformer')", self.norm, _TRANSFORMER_NORMS)
            set_("tokens", int(self.tokens))
            set_("heads", int(heads))
            set_("mlp", mlp)

    # ---- derived quantities -------------------------------------------------------------------
    @property
    def alpha(self):
        """Residual branch scale α as a number (1.0 for non-residual archs and for a transformer without
        skip; traced where it is a leaf)."""
        if self.arch not in ("resmlp", "transformer") or self._no_skip:
            return 1.0
        if isinstance(self.residual_scale, str):
            return 1.0 / math.sqrt(self.depth)
        return self.residual_scale

    @property
    def _no_skip(self) -> bool:
        return isinstance(self.residual_scale, str) and self.residual_scale == NO_SKIP

    @property
    def skip(self) -> bool:
        """Whether blocks add their input back (resmlp; transformer unless residual_scale="none")."""
        return self.arch == "resmlp" or (self.arch == "transformer" and not self._no_skip)

    @property
    def pre_norm(self) -> bool:
        """A norm normalizes each block's input (``norm != "none"`` and ``norm_position == "pre"``)."""
        return self.norm != "none" and self.norm_position == "pre"

    @property
    def post_norm(self) -> bool:
        """A norm normalizes each block's output (``norm != "none"`` and ``norm_position == "post"``)."""
        return self.norm != "none" and self.norm_position == "post"

    @property
    def traced(self) -> bool:
        """Whether any number of the config is a tracer (inside ``jax.jit`` / ``jax.vmap``)."""
        return any(is_traced(getattr(self, f)) for f in NUMBER_FIELDS)

    def structure(self) -> tuple:
        """The static fields (everything but the numbers; a residual rule string included) as a tuple."""
        rule = self.residual_scale if isinstance(self.residual_scale, str) else None
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in NUMBER_FIELDS) + (rule,)

    @property
    def state_size(self) -> int:
        """D, the size of one example's state h_l: N, prod(spatial)·N (cnn) or tokens·N (transformer)."""
        if self.arch == "cnn":
            return math.prod(self.spatial) * self.width
        if self.arch == "transformer":
            return self.tokens * self.width
        return self.width

    @property
    def jnp_dtype(self):
        return jnp.float64 if self.dtype == "float64" else jnp.float32

    def with_(self, **changes) -> "NetConfig":
        """A copy with ``changes`` applied, validated again.

        Fields resolved from others (``sigma_w2`` from ``init``, ``leaky_slope`` from
        ``activation``, ``in_dim``/``out_dim`` from ``width``, ``residual_scale`` from ``arch``) are
        re-resolved when what they came from changes and they are not given explicitly.
        """
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(f"NetConfig has no field(s) {unknown}; fields: {[f.name for f in dataclasses.fields(self)]}")
        kw = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        resolved_from = {
            "leaky_slope": ("activation",),
            "in_dim": ("width",) if self.in_dim == self.width else (),
            "out_dim": ("width",) if self.out_dim == self.width else (),
            "residual_scale": ("arch",),
            **{f: ("arch",) for f in _ARCH_FIELDS},
        }
        for field, sources in resolved_from.items():
            if field not in changes and any(s in changes and changes[s] != kw[s] for s in sources):
                kw[field] = None
        new_init = changes.get("init", self.init)
        if "sigma_w2" not in changes and (self.init not in SCALED_INITS or new_init not in SCALED_INITS):
            kw["sigma_w2"] = None  # a fixed scheme's σ_w² is derived, never carried over
        kw.update(changes)
        return NetConfig(**kw)


# ---- pytree: numbers as leaves, structure as auxiliary data -------------------------------------

_STRUCTURE_FIELDS = tuple(f.name for f in dataclasses.fields(NetConfig) if f.name not in NUMBER_FIELDS)


def _flatten_with_keys(cfg: NetConfig):
    numbers = [getattr(cfg, f) for f in NUMBER_FIELDS]
    if isinstance(cfg.residual_scale, str):
        numbers[NUMBER_FIELDS.index("residual_scale")] = None  # a rule is structure, not a leaf
    children = tuple((jax.tree_util.GetAttrKey(f), v) for f, v in zip(NUMBER_FIELDS, numbers))
    return children, cfg.structure()


def _unflatten(aux: tuple, numbers) -> NetConfig:
    # No validation here: leaves may be tracers, shardings or placeholders while JAX rebuilds trees.
    cfg = object.__new__(NetConfig)
    for f, v in zip(_STRUCTURE_FIELDS, aux[:-1]):
        object.__setattr__(cfg, f, v)
    for f, v in zip(NUMBER_FIELDS, numbers):
        object.__setattr__(cfg, f, v)
    if aux[-1] is not None:
        object.__setattr__(cfg, "residual_scale", aux[-1])
    return cfg


jax.tree_util.register_pytree_with_keys(NetConfig, _flatten_with_keys, _unflatten)
