import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradjax.empirical.losses import loss_fn


def test_mse_is_half_mean_over_batch_of_summed_squares():
    y = jnp.asarray([[1.0, 2.0], [0.0, -1.0]])
    t = jnp.asarray([[0.0, 0.0], [1.0, 1.0]])
    # ½ · mean(1+4, 1+4) = 2.5  (closed form of the definition)
    np.testing.assert_allclose(loss_fn("mse")(y, t), 2.5)


def test_xent_labels_equal_one_hot_and_manual_log_softmax(key):
    y = jax.random.normal(key, (5, 4), jnp.float64)
    labels = jnp.asarray([0, 3, 1, 2, 3])
    manual = -np.mean([float(y[i, labels[i]] - jax.scipy.special.logsumexp(y[i])) for i in range(5)])
    np.testing.assert_allclose(loss_fn("xent")(y, labels), manual, rtol=1e-12)
    np.testing.assert_allclose(loss_fn("xent")(y, jax.nn.one_hot(labels, 4, dtype=jnp.float64)), manual, rtol=1e-12)


def test_registry_errors_and_callables():
    f = lambda y, t: jnp.sum(y)  # noqa: E731
    assert loss_fn(f) is f
    with pytest.raises(ValueError, match="loss must be one of"):
        loss_fn("mes")
    with pytest.raises(TypeError):
        loss_fn(3)
    with pytest.raises(ValueError, match="shape"):
        loss_fn("mse")(jnp.zeros((2, 3)), jnp.zeros((2, 2)))


def test_projection_is_inner_product_over_batch_and_its_cotangent_is_t_over_b(key):
    y = jax.random.normal(key, (4, 3), jnp.float64)
    t = jax.random.normal(jax.random.fold_in(key, 1), (4, 3), jnp.float64)
    # definition: Σ_b Σ_o y·t / B, written out; its gradient in y is t/B whatever y is
    np.testing.assert_allclose(loss_fn("projection")(y, t), float(np.sum(np.asarray(y) * np.asarray(t))) / 4, rtol=1e-12)
    np.testing.assert_allclose(jax.grad(loss_fn("projection"))(y, t), np.asarray(t) / 4, rtol=1e-12)
    with pytest.raises(ValueError, match="projection targets"):
        loss_fn("projection")(y, t[:, :2])
