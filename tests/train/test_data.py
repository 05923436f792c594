"""Data sets: bundled digits, synthetic tasks, and the .npz loader's refusals."""

import jax
import numpy as np
import pytest

from gradjax.config import NetConfig
from gradjax.nn.stack import forward, init_params
from gradjax.train import Dataset, adding_problem, copy_task, load_digits, load_npz, teacher_student


def test_digits_split_and_standardization():
    from sklearn.datasets import load_digits as sk_digits

    d = load_digits()
    assert d.x_train.shape == (1400, 64) and d.x_test.shape == (397, 64)
    assert d.y_train.dtype == np.int32 and d.task == "classification" and d.loss == "xent"
    assert d.n_classes == d.out_dim == 10 and d.in_dim == 64
    # Standardized with training statistics: every non-constant pixel has mean 0, std 1 on the train split.
    std = d.x_train.astype(np.float64).std(axis=0)  # float64 sums: the arrays are float32
    live = std > 0
    np.testing.assert_allclose(d.x_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(std[live], 1.0, rtol=1e-5)
    assert live.sum() >= 60  # only a few border pixels are blank in every training image
    # The two splits are a partition of scikit-learn's 1,797 images (labels counted per class).
    full = np.bincount(sk_digits().target, minlength=10)
    np.testing.assert_array_equal(np.bincount(d.y_train, minlength=10) + np.bincount(d.y_test, minlength=10), full)
    # Fixed split: same seed same arrays, another seed another split.
    again = load_digits()
    np.testing.assert_array_equal(again.x_train, d.x_train)
    assert not np.array_equal(load_digits(split_seed=1).y_train, d.y_train)


def test_adding_problem_targets_are_the_marked_sums():
    T = 20
    d = adding_problem(seq_len=T, n_train=64, n_test=16, seed=3)
    assert d.x_train.shape == (64, T, 2) and d.y_train.shape == (64, 1) and d.task == "regression"
    for x, y in ((d.x_train, d.y_train), (d.x_test, d.y_test)):
        marks = x[..., 1]
        assert np.all(marks.sum(axis=1) == 2)
        assert np.all(marks[:, : T // 2].sum(axis=1) == 1) and np.all(marks[:, T // 2 :].sum(axis=1) == 1)
        np.testing.assert_allclose(y[:, 0], (x[..., 0] * marks).sum(axis=1), rtol=1e-6)
        assert np.all((x[..., 0] >= 0) & (x[..., 0] < 1))
    np.testing.assert_array_equal(adding_problem(seq_len=T, n_train=64, n_test=16, seed=3).x_train, d.x_train)


def test_copy_task_label_is_the_first_symbol():
    T, K = 15, 5
    d = copy_task(seq_len=T, n_symbols=K, n_train=50, n_test=10, seed=1)
    assert d.x_train.shape == (50, T, K + 1) and d.y_train.shape == (50,) and d.n_classes == K
    np.testing.assert_array_equal(d.x_train[:, 0, :K].argmax(axis=1), d.y_train)
    assert np.all(d.x_train[:, 1:-1] == 0) and np.all(d.x_train[:, -1, K] == 1)


@pytest.mark.parametrize("arch", ["mlp", "rnn"])
def test_teacher_student_labels_are_the_teacher_outputs(arch):
    teacher = NetConfig(depth=3, width=8, in_dim=4, out_dim=2, arch=arch)
    d = teacher_student(teacher, n_train=30, n_test=10, seed=2)
    x = np.concatenate([d.x_train, d.x_test])
    assert x.shape == ((40, 4) if arch == "mlp" else (40, 3, 4))
    want = forward(teacher, init_params(teacher, jax.random.key(2)), x)
    np.testing.assert_allclose(np.concatenate([d.y_train, d.y_test]), want, rtol=1e-5, atol=1e-6)
    noisy = teacher_student(teacher, n_train=30, n_test=10, noise=0.5, seed=2)
    resid = noisy.y_train - d.y_train
    assert 0.2 < resid.std() < 1.0  # noise std 0.5, 60 draws
    assert teacher_student().y_train.shape == (1024, 1)


def _save(tmp_path, name="d.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_load_npz_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x_tr, x_te = rng.normal(3.0, 2.0, (20, 4, 4)), rng.normal(3.0, 2.0, (7, 4, 4))
    y_tr, y_te = rng.integers(0, 3, 20), rng.integers(0, 3, 7)
    d = load_npz(_save(tmp_path, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te))
    assert d.task == "classification" and d.name == "d" and d.x_train.shape == (20, 16)
    np.testing.assert_allclose(d.x_train.mean(axis=0), 0.0, atol=1e-5)
    raw = load_npz(_save(tmp_path, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te), standardize_inputs=False, flatten=False)
    np.testing.assert_allclose(raw.x_test, x_te.astype(np.float32))
    reg = load_npz(_save(tmp_path, x_train=x_tr, y_train=rng.normal(size=20), x_test=x_te, y_test=rng.normal(size=7)))
    assert reg.task == "regression" and reg.y_train.shape == (20, 1)


def test_load_npz_refuses_clearly(tmp_path):
    ok = dict(x_train=np.zeros((4, 3)), y_train=np.zeros(4, int), x_test=np.zeros((2, 3)), y_test=np.zeros(2, int))
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_npz(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="y_test"):
        load_npz(_save(tmp_path, **{k: v for k, v in ok.items() if k != "y_test"}))
    objects = np.empty(4, dtype=object)
    objects[:] = [np.zeros(2)] * 4
    with pytest.raises(ValueError, match="pickle"):
        load_npz(_save(tmp_path, "obj.npz", **{**ok, "x_train": objects}))
    with pytest.raises(ValueError, match="x_train"):
        load_npz(_save(tmp_path, "len.npz", **{**ok, "x_train": np.zeros((5, 3))}))
    with pytest.raises(ValueError, match="per-example shape"):
        load_npz(_save(tmp_path, "shape.npz", **{**ok, "x_test": np.zeros((2, 4))}))
    with pytest.raises(ValueError, match="integer labels"):
        load_npz(_save(tmp_path, "lab.npz", **{**ok, "y_train": np.zeros(4)}), task="classification")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip archive")
    with pytest.raises(ValueError, match="not a readable"):
        load_npz(bad)
    with pytest.raises(ValueError, match="task"):
        load_npz(_save(tmp_path, **ok), task="ranking")


def test_dataset_validates():
    x, y = np.zeros((4, 3), np.float32), np.zeros(4, np.int32)
    with pytest.raises(ValueError, match="same number"):
        Dataset(x, y[:3], x, y)
    with pytest.raises(ValueError, match="regression"):
        Dataset(x, y, x, y, task="regression")
    with pytest.raises(ValueError, match="task"):
        Dataset(x, y, x, y, task="ranking")
