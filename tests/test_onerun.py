"""One-run audit bounds (Steinke et al. 2023 with the paper's delta term; f-DP/GDP of Mahloujifar et al.
2025): known values, strength with many canaries, and validity in simulation against mechanisms whose
privacy is known exactly."""

import math

import numpy as np
import pytest

from privaudit.canaries.onerun import gdp_epsilon, gdp_mu, one_run_audit, steinke_epsilon, steinke_p_value


def test_steinke_without_delta_is_the_binomial_tail():
    # all 50 of 50 right: rejected while q^50 <= beta, i.e. eps <= log(q / (1 - q)) with q = beta^(1/50)
    q = 0.05 ** (1 / 50)
    assert steinke_epsilon(100, 50, 50, 0.0, 0.05) == pytest.approx(math.log(q / (1 - q)), abs=1e-4)
    assert steinke_epsilon(100, 20, 10, 1e-5, 0.05) == 0.0  # coin-flip accuracy proves nothing


def test_delta_term_is_the_papers_not_the_crude_one():
    # The crude term 2 m delta alone exceeds beta from m = 2,500 canaries at delta 1e-5 (bound exactly 0);
    # the paper's term scales it by alpha = max_i P[v - i <= W' < v] / i, which is tiny for strong results.
    for m in (1000, 10_000):
        r = m // 5
        v = int(0.95 * r)
        bound = steinke_epsilon(m, r, v, 1e-5, 0.05)
        assert bound > 2.0, (m, bound)
    assert steinke_epsilon(10_000, 2000, 1900, 1e-5, 0.05) > steinke_epsilon(1000, 200, 190, 1e-5, 0.05)
    # the delta term only ever raises the p-value
    assert steinke_p_value(1000, 200, 190, 2.0, 1e-5) >= steinke_p_value(1000, 200, 190, 2.0, 0.0)


def test_gdp_epsilon_matches_the_gaussian_mechanism():
    # mu-GDP is the Gaussian mechanism with sensitivity / sigma = mu: at mu = 1, delta 1e-5 -> epsilon 4.38
    assert gdp_epsilon(1.0, 1e-5) == pytest.approx(4.377, abs=0.01)
    assert gdp_epsilon(0.0, 1e-5) == 0.0
    assert gdp_mu(1000, 100, 50, 0.05) == 0.0  # chance accuracy rejects nothing


def randomized_response(rng, m, epsilon):
    included = rng.random(m) < 0.5
    truthful = rng.random(m) < math.exp(epsilon) / (1 + math.exp(epsilon))
    # Ties broken at random: the auditor's order among equal observations carries no information.
    return np.where(truthful, included, ~included) + rng.random(m) * 1e-6, included


@pytest.mark.parametrize("trials", [40, pytest.param(200, marks=pytest.mark.slow)])
def test_steinke_bound_is_valid_on_randomized_response(trials):
    """Randomized response at epsilon is exactly the worst case of (epsilon, 0)-DP: the 95% bound may
    exceed the truth in at most 5% of runs (an exact test does so in up to 5%, by construction)."""
    rng = np.random.default_rng(0)
    epsilon = 1.0
    above = sum(
        one_run_audit(*randomized_response(rng, 1000, epsilon), delta=0.0).steinke.epsilon > epsilon
        for _ in range(trials)
    )
    assert above <= 0.05 * trials + 2 * math.sqrt(0.05 * 0.95 * trials)  # two binomial SDs of slack
    strong = one_run_audit(*randomized_response(rng, 1000, 3.0), delta=1e-5)
    assert 1.5 < strong.steinke.epsilon <= 3.0  # and it finds most of a large epsilon


@pytest.mark.parametrize("trials", [25, pytest.param(100, marks=pytest.mark.slow)])
def test_gdp_bound_is_valid_on_the_gaussian_mechanism(trials):
    """Scores N(mu * included, 1) are exactly mu-GDP: the rejected mu stays below the true mu."""
    rng = np.random.default_rng(1)
    mu = 1.0
    bounds = []
    for _ in range(trials):
        included = rng.random(1000) < 0.5
        bounds.append(one_run_audit(rng.normal(size=1000) + mu * included, included, 1e-5).gdp.mu)
    assert sum(b > mu for b in bounds) <= 0.05 * trials
    assert np.median(bounds) > 0.3  # and it is not vacuous


def test_no_signal_no_bound():
    rng = np.random.default_rng(3)
    false_positives = sum(
        one_run_audit(rng.normal(size=200), rng.random(200) < 0.5, 1e-5).steinke.epsilon > 0 for _ in range(50)
    )
    assert false_positives <= 5
