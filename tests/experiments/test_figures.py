"""Figure helpers draw stored numbers: the median and 10–90 % band are numpy's quantiles across seeds."""

import numpy as np
import pytest
import xarray as xr

from gradjax.experiments import figures


def test_seed_quantiles_match_numpy_and_skip_nan():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(11, 4))
    a[3, 1] = np.nan
    a[:, 3] = np.nan  # a layer no seed reached (shorter network in a merged grid)
    da = xr.DataArray(a.T, dims=("layer", "seed"))  # seed not first: the helper finds it by name
    lo, med, hi = figures.seed_quantiles(da)
    np.testing.assert_allclose(med[:3], np.nanquantile(a[:, :3], 0.5, axis=0), rtol=1e-15)
    np.testing.assert_allclose(lo[:3], np.nanquantile(a[:, :3], 0.1, axis=0), rtol=1e-15)
    np.testing.assert_allclose(hi[:3], np.nanquantile(a[:, :3], 0.9, axis=0), rtol=1e-15)
    assert np.isnan([lo[3], med[3], hi[3]]).all()


def test_coord_label():
    assert figures.coord_label("sigma_w2") == "σ_w²"
    assert figures.coord_label("sigma_w2", 2.0) == "σ_w²=2"
    assert figures.coord_label("sigma_b2", 0.05) == "σ_b²=0.05"
    assert figures.coord_label("activation", "tanh") == "φ=tanh"
    assert figures.coord_label("custom", 3) == "custom=3"


def test_helpers_draw_and_save(tmp_path):
    fig, axes = figures.panels(4, ncols=3)
    assert len(axes) == 4
    x = np.arange(1, 6)
    vals = np.random.default_rng(1).normal(size=(8, 5))
    line = figures.median_band(axes[0], x, vals, color="C0", label="m")
    np.testing.assert_allclose(line.get_ydata(), np.median(vals, axis=0))
    figures.theory_line(axes[0], x, x * 0.1, color="C0")
    figures.style_legend(axes[0])
    counts, edges = figures.histogram(axes[1], vals, bins=10)
    assert np.isclose(np.sum(counts * np.diff(edges)), 1.0)  # a density
    path = figures.save(fig, tmp_path / "figs", "demo", formats=("png", "pdf"))
    assert path == tmp_path / "figs" / "demo.png" and path.stat().st_size > 0
    assert (tmp_path / "figs" / "demo.pdf").exists()
    with pytest.raises(ValueError):
        figures.panels(0)
