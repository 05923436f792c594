"""Data sets that need no download, and a loader for the user's own ``.npz`` files.

Every loader returns a :class:`Dataset`: train and test arrays plus the task ("classification"
with integer labels, trained with cross-entropy; or "regression" with (n, out_dim) float targets,
trained with ½-MSE). Inputs are shaped for the network: (n, in_dim) for mlp/resmlp and
(n, T, in_dim) for the rnn (T = ``NetConfig.depth`` = sequence length).

References:
  Alpaydin & Kaynak 1998, "Optical Recognition of Handwritten Digits", UCI ML repository (the
  8×8 digits bundled with scikit-learn).
  Hochreiter & Schmidhuber 1997, "Long Short-Term Memory", Neural Computation 9(8) (adding problem,
  long-delay recall).
  Arjovsky, Shah & Bengio 2016, "Unitary Evolution Recurrent Neural Networks", arXiv:1511.06464
  (adding and copy-memory benchmarks).
  Saad & Solla 1995, "On-line learning in soft committee machines", Phys. Rev. E 52 (teacher–student).
"""

from __future__ import annotations

import dataclasses
import os
import zipfile

import jax
import numpy as np

from gradjax._validate import check_choice, check_int, check_real
from gradjax.config import NetConfig
from gradjax.nn.stack import forward, init_params, input_shape

TASKS = ("classification", "regression")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")

#: Size of the digits training split; the other 1,797 − 1,400 = 397 images are the test set.
DIGITS_TRAIN = 1400
#: Floor on a feature's standard deviation when standardizing: constant features (e.g. the always-blank
#: corner pixels of the digits) are centred and left at 0 instead of divided by ~0.
STD_FLOOR = 1e-8


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Train/test arrays and the task.

    Attributes:
      x_train: (n_train, in_dim) or (n_train, T, in_dim) float32 inputs.
      y_train: (n_train,) int32 labels (classification) or (n_train, out_dim) float32 targets.
      x_test, y_test: the same for the test set.
      task: "classification" | "regression".
      name: a label for logs and plots.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    task: str = "classification"
    name: str = "data"

    def __post_init__(self):
        check_choice("task", self.task, TASKS)
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
                raise TypeError(f"x_{split} and y_{split} must be numpy arrays, got {type(x).__name__}, {type(y).__name__}")
            if x.ndim not in (2, 3):
                raise ValueError(f"x_{split} must have shape (n, in_dim) or (n, T, in_dim), got {x.shape}")
            if len(x) == 0 or len(y) != len(x):
                raise ValueError(
                    f"x_{split} and y_{split} must hold the same number (>= 1) of examples, got {x.shape} and {y.shape}"
                )
            if self.task == "classification":
                if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
                    raise ValueError(
                        f"classification y_{split} must be non-negative integer labels of shape (n,), "
                        f"got dtype {y.dtype} and shape {y.shape}"
                    )
            elif y.ndim != 2 or not np.issubdtype(y.dtype, np.floating):
                raise ValueError(f"regression y_{split} must be float targets of shape (n, out_dim), got dtype {y.dtype} and shape {y.shape}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(f"x_train and x_test must share their per-example shape, got {self.x_train.shape[1:]} and {self.x_test.shape[1:]}")
        if self.task == "regression" and self.y_train.shape[1:] != self.y_test.shape[1:]:
            raise ValueError(f"y_train and y_test must share their per-example shape, got {self.y_train.shape[1:]} and {self.y_test.shape[1:]}")

    @property
    def in_dim(self) -> int:
        """Size of one input vector (the last axis of x)."""
        return int(self.x_train.shape[-1])

    @property
    def seq_len(self) -> int | None:
        """Sequence length T of (n, T, in_dim) inputs; None for flat inputs."""
        return int(self.x_train.shape[1]) if self.x_train.ndim == 3 else None

    @property
    def n_classes(self) -> int | None:
        """Number of classes (largest label + 1 over both splits); None for regression."""
        if self.task != "classification":
            return None
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    @property
    def out_dim(self) -> int:
        """Network outputs needed: the number of classes, or the target size."""
        return self.n_classes if self.task == "classification" else int(self.y_train.shape[1])

    @property
    def loss(self) -> str:
        """Loss registry name the task is trained with: "xent" or "mse"."""
        return "xent" if self.task == "classification" else "mse"


def standardize(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres and scales every feature by the training set's mean and standard deviation.

    Statistics are per feature (last axis, pooled over examples and time steps), from the training
    split only, so no test information leaks in. Constant features stay at 0 (see ``STD_FLOOR``).
    """
    axes = tuple(range(x_train.ndim - 1))
    mean = x_train.mean(axis=axes, keepdims=True)
    std = x_train.std(axis=axes, keepdims=True)
    std = np.where(std < STD_FLOOR, 1.0, std)
    return (x_train - mean) / std, (x_test - mean) / std


def load_digits(*, split_seed: int = 0) -> Dataset:
    """scikit-learn's handwritten digits: 1,797 8×8 images, 10 classes, shipped with the package.

    Inputs are the 64 pixel intensities, standardized per pixel with the training statistics (unit
    variance, so the input layer starts at q₀ ≈ 1 as in the mean-field setting). The split is a fixed
    permutation drawn from ``numpy.random.default_rng(split_seed)``: the first 1,400 images train,
    the other 397 test.

    Returns:
      Dataset with x (n, 64) float32, y (n,) int32 labels 0..9, task "classification".
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    check_int("split_seed", split_seed, minimum=0)
    bunch = _sk_load_digits()
    x, y = np.asarray(bunch.data, np.float64), np.asarray(bunch.target, np.int32)
    order = np.random.default_rng(split_seed).permutation(len(x))
    tr, te = order[:DIGITS_TRAIN], order[DIGITS_TRAIN:]
    x_tr, x_te = standardize(x[tr], x[te])
    return Dataset(x_tr.astype(np.float32), y[tr], x_te.astype(np.float32), y[te], "classification", "digits")


def teacher_student(teacher=None, *, n_train: int = 1024, n_test: int = 512, noise: float = 0.0,
                    seed: int = 0) -> Dataset:
    """Regression on the outputs of a random teacher network.

    ``x ~ N(0, I)`` (shaped for the teacher's arch), ``y = teacher(x) + noise·ε`` with ε ~ N(0, I).

    Args:
      teacher: a ``NetConfig``; default a depth-2 tanh mlp, width 64, in_dim 16, out_dim 1.
      n_train, n_test: split sizes.
      noise: standard deviation of the label noise, ≥ 0.
      seed: the teacher's parameters are ``init_params(teacher, jax.random.key(seed))``; inputs and
        noise come from ``numpy.random.default_rng(seed)``.

    Returns:
      Dataset with x (n, in_dim) (or (n, T, in_dim) for an rnn teacher) and y (n, out_dim) float32,
      task "regression".
    """
    if teacher is None:
        teacher = NetConfig(depth=2, width=64, in_dim=16, out_dim=1, activation="tanh")
    if not isinstance(teacher, NetConfig):
        raise TypeError(f"teacher must be a NetConfig or None, got {teacher!r}")
    check_int("n_train", n_train)
    check_int("n_test", n_test)
    check_real("noise", noise, minimum=0.0)
    check_int("seed", seed, minimum=0)
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    x = rng.standard_normal(input_shape(teacher, n)).astype(np.float32)
    params = init_params(teacher, jax.random.key(seed))
    y = np.asarray(jax.jit(lambda p, x: forward(teacher, p, x))(params, x), np.float64)
    y = (y + noise * rng.standard_normal(y.shape)).astype(np.float32)
    return Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:], "regression", "teacher_student")


def adding_problem(*, seq_len: int = 50, n_train: int = 2048, n_test: int = 512, seed: int = 0) -> Dataset:
    """The adding problem: sum the two marked numbers of a sequence.

    Each example is T steps of (value, marker): values ~ U(0, 1); the marker is 1 at one step drawn
    uniformly from the first half [0, T/2) and one from the second half [T/2, T), else 0. The target
    is the sum of the two marked values. Predicting the mean 1 gives ½-MSE = ½·Var = ½·(2/12) = 1/12,
    the baseline a model must beat.

    Returns:
      Dataset with x (n, T, 2), y (n, 1) float32, task "regression".
    """
    check_int("seq_len", seq_len, minimum=2)
    check_int("n_train", n_train)
    check_int("n_test", n_test)
    check_int("seed", seed, minimum=0)
    rng = np.random.default_rng(seed)
    n, half = n_train + n_test, seq_len // 2
    values = rng.uniform(0.0, 1.0, (n, seq_len))
    first = rng.integers(0, half, n)
    second = rng.integers(half, seq_len, n)
    markers = np.zeros((n, seq_len))
    markers[np.arange(n), first] = 1.0
    markers[np.arange(n), second] = 1.0
    x = np.stack([values, markers], axis=-1).astype(np.float32)
    y = (values[np.arange(n), first] + values[np.arange(n), second])[:, None].astype(np.float32)
    return Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:], "regression", f"adding_T{seq_len}")


def copy_task(*, seq_len: int = 50, n_symbols: int = 8, n_train: int = 2048, n_test: int = 512,
              seed: int = 0) -> Dataset:
    """Long-delay recall (the copy/memory task with one symbol): name the symbol seen T−1 steps ago.

    Step 0 carries a one-hot symbol out of ``n_symbols``; steps 1..T−2 are blank; the last step
    carries the recall cue (channel ``n_symbols``). The label is the symbol, so the gradient must
    cross all T steps; chance is accuracy 1/n_symbols and cross-entropy ln(n_symbols).

    Returns:
      Dataset with x (n, T, n_symbols + 1) float32, y (n,) int32, task "classification".
    """
    check_int("seq_len", seq_len, minimum=2)
    check_int("n_symbols", n_symbols, minimum=2)
    check_int("n_train", n_train)
    check_int("n_test", n_test)
    check_int("seed", seed, minimum=0)
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    y = rng.integers(0, n_symbols, n).astype(np.int32)
    x = np.zeros((n, seq_len, n_symbols + 1), np.float32)
    x[np.arange(n), 0, y] = 1.0
    x[:, -1, n_symbols] = 1.0
    return Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:], "classification", f"copy_T{seq_len}")


def load_npz(path, *, task: str | None = None, flatten: bool = True, standardize_inputs: bool = True,
             name: str | None = None) -> Dataset:
    """The user's own data from an ``.npz`` with arrays ``x_train, y_train, x_test, y_test``.

    Files are opened with ``allow_pickle=False``: unpickling a downloaded file can run arbitrary code,
    so object arrays are refused. Use it for MNIST/CIFAR where the files are at hand.

    Args:
      path: the ``.npz`` file.
      task: "classification" | "regression"; default: classification when ``y_train`` holds
        integers, else regression.
      flatten: reshape x to (n, prod(rest)) (images → vectors, for mlp/resmlp); keep False to
        pass (n, T, in_dim) sequences to an rnn.
      standardize_inputs: standardize per feature with the training statistics.
      name: label; default the file name.

    Returns:
      Dataset (float32 inputs; int32 labels or (n, out_dim) float32 targets; 1-D regression
      targets become (n, 1)).

    Raises:
      FileNotFoundError: no such file. ValueError: not an .npz archive, missing keys, arrays that
      need pickles, or inconsistent shapes.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_npz: no such file {path!r}")
    if task is not None:
        check_choice("task", task, TASKS)
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        raise ValueError(f"load_npz: {path!r} is not a readable .npz archive ({e})") from e
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"load_npz: {path!r} is a single .npy array, expected an .npz with keys {list(NPZ_KEYS)}")
    with archive:
        missing = [k for k in NPZ_KEYS if k not in archive.files]
        if missing:
            raise ValueError(f"load_npz: {path!r} lacks {missing}; it must hold {list(NPZ_KEYS)}, found {archive.files}")
        arrays = {}
        for k in NPZ_KEYS:
            try:
                arrays[k] = archive[k]
            except ValueError as e:  # numpy: "Object arrays cannot be loaded when allow_pickle=False"
                raise ValueError(
                    f"load_npz: array {k!r} in {path!r} is an object array that needs pickle to load; pickles "
                    "are refused (loading one can run arbitrary code). Save plain numeric arrays instead."
                ) from e
    for k, a in arrays.items():
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
            raise ValueError(f"load_npz: array {k!r} must be numeric, got dtype {a.dtype}")
    x_tr, y_tr, x_te, y_te = (arrays[k] for k in NPZ_KEYS)
    for split, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te)):
        if x.ndim < 2 or len(x) == 0 or len(x) != len(y):
            raise ValueError(
                f"load_npz: x_{split} must be (n, ...) with n >= 1 matching y_{split}, got shapes {x.shape} and {y.shape}"
            )
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise ValueError(
            f"load_npz: x_train and x_test must share their per-example shape, got {x_tr.shape[1:]} and {x_te.shape[1:]}"
        )
    if task is None:
        task = "classification" if np.issubdtype(y_tr.dtype, np.integer) else "regression"
    if flatten:
        x_tr, x_te = x_tr.reshape(len(x_tr), -1), x_te.reshape(len(x_te), -1)
    elif x_tr.ndim > 3:
        raise ValueError(f"load_npz: with flatten=False x must be (n, in_dim) or (n, T, in_dim), got {x_tr.shape}")
    x_tr, x_te = x_tr.astype(np.float64), x_te.astype(np.float64)
    if standardize_inputs:
        x_tr, x_te = standardize(x_tr, x_te)
    if task == "classification":
        for k, y in (("y_train", y_tr), ("y_test", y_te)):
            if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
                raise ValueError(f"load_npz: classification {k} must be integer labels of shape (n,), got {y.dtype} {y.shape}")
        y_tr, y_te = y_tr.astype(np.int32), y_te.astype(np.int32)
    else:
        y_tr, y_te = (y.reshape(len(y), -1).astype(np.float32) for y in (y_tr, y_te))
    label = name if name is not None else os.path.splitext(os.path.basename(path))[0]
    return Dataset(x_tr.astype(np.float32), y_tr, x_te.astype(np.float32), y_te, task, label)
