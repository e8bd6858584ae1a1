"""Volatility models against references on the real 1-minute klines."""

from __future__ import annotations

import numpy as np
import pytest
from arch import arch_model

from stevie.quant import vol
from stevie.quant.errors import QuantInputError
from tests.helpers.klines import closes


@pytest.fixture(scope="module")
def btc_returns():
    return vol.log_returns(closes("BTCUSDT"))


def test_realized_variance_is_sum_of_squares_per_day(btc_returns):
    rv = vol.realized_variance(btc_returns, 1440)
    assert rv.size == btc_returns.size // 1440
    assert rv[3] == pytest.approx(np.sum(btc_returns[3 * 1440 : 4 * 1440] ** 2), rel=1e-12)


def test_har_equals_plain_least_squares(btc_returns):
    rv = vol.realized_variance(btc_returns, 240)  # 4-hour RV: ~300 periods
    p = vol.fit_har(rv)
    rows, y = [], []
    for t in range(22, rv.size):  # the textbook design, built row by row
        rows.append([1.0, rv[t - 1], np.mean(rv[t - 5 : t]), np.mean(rv[t - 22 : t])])
        y.append(rv[t])
    X, Y = np.array(rows), np.array(y)
    ref = np.linalg.solve(X.T @ X, X.T @ Y)
    np.testing.assert_allclose([p.a, p.b_d, p.b_w, p.b_m], ref, rtol=1e-8, atol=1e-8 * abs(ref).max())


def test_har_beats_constant_variance_out_of_sample(btc_returns):
    """Rolling one-step forecasts over the last third; QLIKE loss vs the expanding mean."""
    rv = vol.realized_variance(btc_returns, 240)
    start = 2 * rv.size // 3
    har_f, const_f = [], []
    for t in range(start, rv.size):
        p = vol.fit_har(rv[:t])
        har_f.append(vol.har_forecast(p, rv[:t]))
        const_f.append(rv[:t].mean())
    realized = rv[start:]
    q_har, q_const = vol.qlike(realized, np.array(har_f)), vol.qlike(realized, np.array(const_f))
    print(f"QLIKE out of sample ({realized.size} 4h periods): HAR {q_har:.4f} vs constant {q_const:.4f}")
    assert q_har < q_const


def test_garch_matches_arch_reference(btc_returns):
    r = btc_returns[-20_000:]
    ours = vol.fit_garch(r)
    scale = 1.0 / r.std()
    ref = arch_model(r * scale, mean="Constant", vol="GARCH", p=1, q=1, dist="normal", rescale=False).fit(disp="off")
    ref_loglik = ref.loglikelihood + r.size * np.log(scale)  # density of r = density of y · scale
    print(f"loglik ours {ours.loglik:.6f} arch {ref_loglik:.6f}; params ours {ours} arch {dict(ref.params)}")
    assert ours.loglik == pytest.approx(ref_loglik, rel=1e-4)
    assert ours.loglik >= ref_loglik - 1e-6 * abs(ref_loglik)  # our optimum is at least as good
    assert ours.alpha == pytest.approx(ref.params["alpha[1]"], abs=5e-3)
    assert ours.beta == pytest.approx(ref.params["beta[1]"], abs=5e-3)
    assert ours.omega == pytest.approx(ref.params["omega"] / scale**2, rel=0.05)
    assert ours.persistence < 1


def test_garch_recovers_simulated_parameters():
    rng = np.random.default_rng(7)
    mu, omega, alpha, beta, n = 0.0, 1e-6, 0.08, 0.9, 30_000
    r = np.empty(n)
    s2 = omega / (1 - alpha - beta)
    for t in range(n):
        r[t] = mu + np.sqrt(s2) * rng.standard_normal()
        s2 = omega + alpha * (r[t] - mu) ** 2 + beta * s2
    p = vol.fit_garch(r)
    assert p.alpha == pytest.approx(alpha, abs=0.02)
    assert p.beta == pytest.approx(beta, abs=0.02)
    assert p.unconditional_variance == pytest.approx(omega / (1 - alpha - beta), rel=0.15)


def test_garch_forecast_converges_to_unconditional():
    p = vol.GarchParams(0.0, 1e-6, 0.1, 0.85, 0.0)
    st = vol.GarchState(4e-5)
    one = vol.garch_forecast(p, st, 1)
    assert one == pytest.approx(np.sqrt(4e-5))
    long = vol.garch_forecast(p, st, 100_000)
    assert long**2 / 100_000 == pytest.approx(p.unconditional_variance, rel=1e-3)
    st2 = vol.garch_update(p, st, 0.01)
    assert st2.sigma2_next == pytest.approx(1e-6 + 0.1 * 1e-4 + 0.85 * 4e-5)


def test_forecast_vol_answers_both_sigmas(btc_returns):
    out = vol.forecast_vol(btc_returns, 60, minutes_per_period=240, garch_window=5000)
    assert set(out) == {"sigmaHAR", "sigmaGARCH"}
    assert 1e-4 < out["sigmaHAR"] < 0.05 and 1e-4 < out["sigmaGARCH"] < 0.05


@pytest.mark.parametrize("bad", [[], [1.0, float("nan"), 2.0], np.ones((3, 3))])
def test_bad_input_raises_documented_error(bad):
    with pytest.raises(QuantInputError):
        vol.realized_variance(bad, 1)
    with pytest.raises(QuantInputError):
        vol.fit_garch(bad)
