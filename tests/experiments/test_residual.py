"""residual helpers: the resolved log10 λ of the histogram.

Reference: the values selected by hand in the test (λ within the floor of each seed's largest).
"""

import numpy as np

from gradjax.experiments import residual


def test_resolved_lambdas_drop_zeros_absent_seeds_and_values_under_the_floor():
    sv = np.array([[1.0, 0.5, -np.inf, 1.0 - residual._FLOOR / 2 - 0.1],  # last: 2·(−6.1) decades below
                   [np.nan] * 4,  # a seed absent from the file
                   [-3.0, -3.5, -4.0, -4.5]])
    u = residual._log10_lambda(sv)
    np.testing.assert_array_equal(np.sort(u), np.sort([2.0, 1.0, -6.0, -7.0, -8.0, -9.0]))
