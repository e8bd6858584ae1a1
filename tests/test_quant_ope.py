"""Off-policy estimators against the Open Bandit Pipeline's definitions (written out here as
plain per-round loops, independently of the vectorised code), DR unbiasedness on a synthetic
bandit with a known logging policy, the bootstrap and the reward model."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from stevie.quant import ope
from stevie.quant.errors import QuantInputError

K = 3


def _bandit(n: int, rng: np.random.Generator):
    """Contexts x ~ N(0, I₂); true mean reward q(x, a) = θₐ·x + bₐ; logging policy softmax of
    1.5·(θₐ·x), known exactly; reward = q + N(0, 0.5²)."""
    theta = np.array([[0.0, 0.0], [1.0, -0.5], [-0.8, 0.6]])
    b = np.array([0.0, 0.2, -0.1])
    x = rng.standard_normal((n, 2))
    q = x @ theta.T + b
    logits = 1.5 * (x @ theta.T)
    pb = np.exp(logits - logits.max(axis=1, keepdims=True))
    pb /= pb.sum(axis=1, keepdims=True)
    a = np.array([rng.choice(K, p=row) for row in pb])
    r = q[np.arange(n), a] + 0.5 * rng.standard_normal(n)
    return x, a, pb[np.arange(n), a], r, q, pb


def _target(x: np.ndarray) -> np.ndarray:
    """A stochastic target policy: 0.7 on the arm best by the first coordinate, 0.1 elsewhere."""
    best = np.where(x[:, 0] > 0, 1, 2)
    pi = np.full((x.shape[0], K), 0.15)
    pi[np.arange(x.shape[0]), best] = 0.7
    return pi


# -- the OBP definitions, one round at a time ------------------------------------------------


def ref_ips(r, a, p, pi, lam=math.inf):
    return sum(min(pi[i][a[i]] / p[i], lam) * r[i] for i in range(len(r))) / len(r)


def ref_snips(r, a, p, pi):
    w = [pi[i][a[i]] / p[i] for i in range(len(r))]
    return sum(w[i] * r[i] for i in range(len(r))) / sum(w)


def ref_dm(pi, q):
    return sum(sum(pi[i][k] * q[i][k] for k in range(len(pi[i]))) for i in range(len(pi))) / len(pi)


def ref_dr(r, a, p, pi, q, lam=math.inf):
    total = 0.0
    for i in range(len(r)):
        base = sum(pi[i][k] * q[i][k] for k in range(len(pi[i])))
        total += base + min(pi[i][a[i]] / p[i], lam) * (r[i] - q[i][a[i]])
    return total / len(r)


def ref_sndr(r, a, p, pi, q):
    w = [pi[i][a[i]] / p[i] for i in range(len(r))]
    mw = sum(w) / len(w)
    total = 0.0
    for i in range(len(r)):
        base = sum(pi[i][k] * q[i][k] for k in range(len(pi[i])))
        total += base + w[i] * (r[i] - q[i][a[i]]) / mw
    return total / len(r)


def test_point_estimates_equal_the_obp_definitions_to_1e10():
    rng = np.random.default_rng(1)
    x, a, p, r, q, _ = _bandit(400, rng)
    pi = _target(x)
    q_hat = q + 0.3 * rng.standard_normal(q.shape)  # an imperfect reward model
    L = [v.tolist() for v in (r, a, p, pi, q_hat)]
    rl, al, pl, pil, ql = L
    assert ope.ips(r, a, p, pi) == pytest.approx(ref_ips(rl, al, pl, pil), abs=1e-10)
    assert ope.ips(r, a, p, pi, clip=2.0) == pytest.approx(ref_ips(rl, al, pl, pil, 2.0), abs=1e-10)
    assert ope.snips(r, a, p, pi) == pytest.approx(ref_snips(rl, al, pl, pil), abs=1e-10)
    assert ope.dm(pi, q_hat) == pytest.approx(ref_dm(pil, ql), abs=1e-10)
    assert ope.dr(r, a, p, pi, q_hat) == pytest.approx(ref_dr(rl, al, pl, pil, ql), abs=1e-10)
    assert ope.dr(r, a, p, pi, q_hat, clip=2.0) == pytest.approx(ref_dr(rl, al, pl, pil, ql, 2.0), abs=1e-10)
    assert ope.sndr(r, a, p, pi, q_hat) == pytest.approx(ref_sndr(rl, al, pl, pil, ql), abs=1e-10)


def test_known_truth_on_hand_data():
    # two rounds, two actions: every term by hand
    r, a, p = np.array([1.0, 3.0]), np.array([0, 1]), np.array([0.5, 0.25])
    pi = np.array([[1.0, 0.0], [0.5, 0.5]])
    q = np.array([[0.5, 1.0], [2.0, 2.0]])
    # w = [2, 2]; IPS = (2·1 + 2·3)/2 = 4; SNIPS = 8/4 = 2; DM = (0.5 + 2)/2 = 1.25
    assert ope.ips(r, a, p, pi) == pytest.approx(4.0, abs=1e-12)
    assert ope.ips(r, a, p, pi, clip=1.0) == pytest.approx(2.0, abs=1e-12)
    assert ope.snips(r, a, p, pi) == pytest.approx(2.0, abs=1e-12)
    assert ope.dm(pi, q) == pytest.approx(1.25, abs=1e-12)
    # DR = mean(0.5 + 2·(1 − 0.5), 2 + 2·(3 − 2)) = mean(1.5, 4) = 2.75; SNDR divides by mean w = 2
    assert ope.dr(r, a, p, pi, q) == pytest.approx(2.75, abs=1e-12)
    assert ope.sndr(r, a, p, pi, q) == pytest.approx(((0.5 + 2 * 0.5 / 2) + (2.0 + 2 * 1.0 / 2)) / 2, abs=1e-12)
    assert ope.effective_sample_size([2.0, 2.0]) == pytest.approx(2.0)
    assert ope.effective_sample_size([1.0, 0.0, 0.0]) == pytest.approx(1.0)


def test_on_policy_target_makes_ips_the_sample_mean():
    rng = np.random.default_rng(2)
    _, a, p, r, _, pb = _bandit(300, rng)
    assert ope.ips(r, a, p, pb) == pytest.approx(float(np.mean(r)), abs=1e-12)
    assert ope.snips(r, a, p, pb) == pytest.approx(float(np.mean(r)), abs=1e-12)


def test_dr_is_unbiased_with_known_propensities_even_with_a_wrong_reward_model():
    """200 replications of the synthetic bandit: DR with a deliberately wrong q̂ (a constant
    −1) stays centred on the true value V(πe) = Eₓ[Σₐ πe(a|x)q(x, a)], DM with that q̂ does not."""
    rng = np.random.default_rng(7)
    dr_est, dm_est, ips_est, truth = [], [], [], []
    for _ in range(200):
        x, a, p, r, q, _ = _bandit(500, rng)
        pi = _target(x)
        bad = np.full(q.shape, -1.0)
        truth.append(float(np.mean(np.sum(pi * q, axis=1))))
        dr_est.append(ope.dr(r, a, p, pi, bad))
        dm_est.append(ope.dm(pi, bad))
        ips_est.append(ope.ips(r, a, p, pi))
    err = np.array(dr_est) - np.array(truth)
    se = err.std(ddof=1) / math.sqrt(err.size)
    assert abs(err.mean()) < 3 * se + 1e-3, (err.mean(), se)
    ierr = np.array(ips_est) - np.array(truth)
    assert abs(ierr.mean()) < 3 * ierr.std(ddof=1) / math.sqrt(ierr.size) + 1e-3
    # the wrong model alone is clearly biased (the truth is ~0.43, not −1)
    assert abs(np.mean(np.array(dm_est) - np.array(truth))) > 10 * se


def test_dr_with_a_good_reward_model_has_less_variance_than_ips():
    rng = np.random.default_rng(8)
    dr_e, ips_e = [], []
    for _ in range(100):
        x, a, p, r, q, _ = _bandit(300, rng)
        pi = _target(x)
        dr_e.append(ope.dr(r, a, p, pi, q))
        ips_e.append(ope.ips(r, a, p, pi))
    assert np.var(dr_e) < 0.5 * np.var(ips_e)


def test_bootstrap_ci_is_reproducible_and_covers():
    rng = np.random.default_rng(3)
    x, a, p, r, q, _ = _bandit(300, rng)
    pi = _target(x)
    lo, hi = ope.bootstrap_ci(ope.dr, r, a, p, pi, q, n_boot=500, seed=4)
    assert (lo, hi) == ope.bootstrap_ci(ope.dr, r, a, p, pi, q, n_boot=500, seed=4)
    assert lo < ope.dr(r, a, p, pi, q) < hi
    lo2, hi2 = ope.bootstrap_ci(ope.ips, r, a, p, pi, n_boot=500, seed=4, clip=3.0)
    assert lo2 < ope.ips(r, a, p, pi, clip=3.0) < hi2
    # a 90 % interval is narrower than a 95 % one from the same draws
    lo3, hi3 = ope.bootstrap_ci(ope.dr, r, a, p, pi, q, alpha=0.1, n_boot=500, seed=4)
    assert hi3 - lo3 < hi - lo


def test_bootstrap_ci_coverage_on_the_mean():
    """The percentile interval of the IPS estimate covers the truth about 95 % of the time."""
    rng = np.random.default_rng(12)
    hits = 0
    reps = 60
    for i in range(reps):
        x, a, p, r, q, _ = _bandit(300, rng)
        pi = _target(x)
        truth = float(np.mean(np.sum(pi * q, axis=1)))
        lo, hi = ope.bootstrap_ci(ope.dr, r, a, p, pi, q, n_boot=300, seed=i)
        hits += lo <= truth <= hi
    assert hits >= 0.85 * reps


def test_cross_fit_ridge_equals_sklearn_on_the_other_fold():
    rng = np.random.default_rng(5)
    x, a, _, r, _, _ = _bandit(200, rng)
    q_hat = ope.cross_fit_q_hat(x, a, r, K, alpha=2.0, folds=2)
    # rows 100.. are predicted by models fitted on rows ..100 only
    for k in range(K):
        m = (np.arange(200) < 100) & (a == k)
        ref = Ridge(alpha=2.0).fit(x[m], r[m])
        np.testing.assert_allclose(q_hat[100:, k], ref.predict(x[100:]), atol=1e-9)
    # changing a row's own reward never changes its own prediction (out of sample)
    r2 = r.copy()
    r2[150] += 100.0
    q2 = ope.cross_fit_q_hat(x, a, r2, K, alpha=2.0, folds=2)
    np.testing.assert_array_equal(q2[100:], q_hat[100:])


def test_deterministic_and_thompson_action_distributions():
    d = ope.deterministic_dist([0, 2, 1], 3)
    np.testing.assert_array_equal(d, np.eye(3)[[0, 2, 1]])
    rng = np.random.default_rng(0)
    m = np.array([[0.0, 0.0], [1.0, 0.0]])
    s = np.array([[1.0, 1.0], [1.0, 1.0]])
    dist = ope.gaussian_argmax_dist(m, s, 20_000, rng)
    np.testing.assert_allclose(dist.sum(axis=1), 1.0)
    from scipy.stats import norm

    assert dist[0, 0] == pytest.approx(0.5, abs=0.02)
    assert dist[1, 0] == pytest.approx(norm.cdf(1 / math.sqrt(2)), abs=0.02)


@pytest.mark.parametrize(
    "bad",
    [
        dict(pscore=[0.0, 0.5]),
        dict(pscore=[1.5, 0.5]),
        dict(action=[0, 5]),
        dict(action_dist=[[0.5, 0.2], [0.5, 0.5]]),
        dict(reward=[float("nan"), 1.0]),
        dict(action_dist=[[1.0, 0.0]]),
    ],
)
def test_bad_inputs_raise(bad):
    args = dict(reward=[1.0, 2.0], action=[0, 1], pscore=[0.5, 0.5], action_dist=[[1.0, 0.0], [0.0, 1.0]])
    args.update(bad)
    with pytest.raises(QuantInputError):
        ope.ips(**args)


def test_snips_undefined_when_the_target_never_takes_a_logged_action():
    with pytest.raises(QuantInputError):
        ope.snips([1.0, 2.0], [0, 0], [0.5, 0.5], [[0.0, 1.0], [0.0, 1.0]])
    # SNDR then reduces to DM
    q = np.array([[1.0, 2.0], [1.0, 4.0]])
    assert ope.sndr([1.0, 2.0], [0, 0], [0.5, 0.5], [[0.0, 1.0], [0.0, 1.0]], q) == pytest.approx(3.0)


def test_vectorised_bootstrap_equals_the_generic_one():
    rng = np.random.default_rng(9)
    x, a, p, r, q, _ = _bandit(200, rng)
    pi = _target(x)
    q_hat = q + 0.2 * rng.standard_normal(q.shape)
    fast = ope.bootstrap_terms(ope.round_terms(r, a, p, pi, q_hat, clip=3.0), n_boot=200, seed=5)
    for name, fn, args, kw in (
        ("ips", ope.ips, (r, a, p, pi), {"clip": 3.0}),
        ("snips", ope.snips, (r, a, p, pi), {}),
        ("dm", ope.dm, (pi, q_hat), {}),
        ("dr", ope.dr, (r, a, p, pi, q_hat), {"clip": 3.0}),
        ("sndr", ope.sndr, (r, a, p, pi, q_hat), {}),
    ):
        est, lo, hi = fast[name]
        assert est == pytest.approx(fn(*args, **kw), abs=1e-10)
        ref = ope.bootstrap_ci(fn, *args, n_boot=200, seed=5, **kw)
        assert (lo, hi) == pytest.approx(ref, abs=1e-10)
