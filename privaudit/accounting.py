"""Privacy accounting for DP-SGD with Poisson subsampling, by Google's dp-accounting library.

The default is the privacy-loss-distribution (PLD) accountant, which is tight up to its
discretisation; RDP (Mironov 2017; as in Abadi et al.'s moments accountant) is offered because many
papers report it, and is always a little looser. Neighbouring relation: add or remove one example.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import asdict, dataclass

import dp_accounting
from dp_accounting import dp_event, pld, rdp

from .errors import PrivauditError

# The RDP accountant logs a warning for each fractional order whose series does not converge (large sampling
# rates) and leaves that order out: the epsilon over the remaining orders is still an upper bound, so the
# warnings say nothing a user must act on.
logging.getLogger("absl").setLevel(logging.ERROR)

ACCOUNTANTS = ("pld", "rdp")
DEFAULT_ACCOUNTANT = "pld"


def _event(noise_multiplier: float, sample_rate: float, steps: int) -> dp_event.DpEvent:
    return dp_event.SelfComposedDpEvent(
        dp_event.PoissonSampledDpEvent(sample_rate, dp_event.GaussianDpEvent(noise_multiplier)), steps
    )


def _accountant(name: str, pld_interval: float = 1e-4):
    if name == "pld":
        # Any discretisation step is pessimistic (an upper bound on epsilon); coarser is faster.
        return pld.PLDAccountant(value_discretization_interval=pld_interval)
    if name == "rdp":
        return rdp.RdpAccountant()
    raise PrivauditError(f"unknown accountant {name!r} (choose from {', '.join(ACCOUNTANTS)})")


def _check(noise_multiplier: float | None, sample_rate: float, steps: int, delta: float) -> None:
    if noise_multiplier is not None and not (math.isfinite(noise_multiplier) and noise_multiplier > 0):
        raise PrivauditError(f"noise multiplier must be a positive number, got {noise_multiplier}")
    if not 0 < sample_rate <= 1:
        raise PrivauditError(f"sample rate must be in (0, 1], got {sample_rate}")
    if steps < 1:
        raise PrivauditError(f"steps must be at least 1, got {steps}")
    if not 0 < delta < 1:
        raise PrivauditError(f"delta must be in (0, 1), got {delta}")


@functools.lru_cache(maxsize=256)
def compute_epsilon(
    noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str = DEFAULT_ACCOUNTANT
) -> float:
    """epsilon of `steps` Poisson-subsampled Gaussian steps at the given delta.

    Remembered: the PLD accountant takes seconds, and shadow models of a DP recipe (trained on data sets
    of one size) ask for the same epsilon again."""
    _check(noise_multiplier, sample_rate, steps, delta)
    event = _event(noise_multiplier, sample_rate, steps)
    acc = _accountant(accountant, _pld_interval(event, delta) if accountant == "pld" else 1e-4)
    acc.compose(event)
    return float(acc.get_epsilon(delta))


def _pld_interval(event: dp_event.DpEvent, delta: float) -> float:
    """The PLD's discretisation step: 1e-4, or 1/100,000 of the RDP epsilon when that is larger.

    The PLD holds one point per step of privacy loss, and with little noise the loss spans thousands
    (noise multiplier 0.1, q 0.004, 5,000 steps: 115 s and 2.3 GB at 1e-4; 0.01 took 19.7 GB). RDP
    (milliseconds, never below the PLD's epsilon) gives the scale, and a step 1e-5 of it keeps the
    array small while costing nothing that matters at that epsilon. Any step gives an upper bound
    (the accountant's pessimistic estimate), so the guarantee stays valid."""
    rdp_accountant = rdp.RdpAccountant()
    rdp_accountant.compose(event)
    return max(1e-4, float(rdp_accountant.get_epsilon(delta)) / 1e5)


def calibrate_noise(
    target_epsilon: float, sample_rate: float, steps: int, delta: float, accountant: str = DEFAULT_ACCOUNTANT
) -> float:
    """The smallest noise multiplier whose epsilon is at most target_epsilon."""
    _check(None, sample_rate, steps, delta)
    if target_epsilon <= 0:
        raise PrivauditError(f"target epsilon must be positive, got {target_epsilon}")
    # RDP is fast and never below the tight epsilon, so its calibrated noise bounds the search from
    # above; small noise makes the PLD slow, so the search never starts far below that bracket.
    upper = dp_accounting.calibrate_dp_mechanism(
        rdp.RdpAccountant,
        lambda s: _event(s, sample_rate, steps),
        target_epsilon,
        delta,
        dp_accounting.LowerEndpointAndGuess(1e-3, 1.0),
        tol=1e-4,
    )
    if accountant == "rdp":
        return float(upper)
    # calibrate_dp_mechanism returns the end of its final bracket on the safe (private) side.
    return float(
        dp_accounting.calibrate_dp_mechanism(
            lambda: _accountant(accountant, pld_interval=1e-3),  # 10x faster than 1e-4 for the search
            lambda s: _event(s, sample_rate, steps),
            target_epsilon,
            delta,
            dp_accounting.ExplicitBracketInterval(upper / 2, upper),
            tol=1e-3,
        )
    )


def default_delta(n_examples: int) -> float:
    """The customary delta, well below 1/n: 1e-5, or a power of ten below 1/(10 n) for larger data."""
    return min(1e-5, 10.0 ** math.floor(math.log10(1.0 / (10 * max(1, n_examples)))))


@dataclass
class PrivacyGuarantee:
    """The (epsilon, delta) a DP-SGD run was accounted to, with what it was computed from."""

    epsilon: float
    delta: float
    accountant: str
    noise_multiplier: float
    sample_rate: float
    steps: int
    max_grad_norm: float
    # True when the noise and sampling were seeded (dp.insecure_seed): no guarantee against the seed's holder.
    reproducible: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PrivacyGuarantee:
        return cls(**d)


def account(dp, sample_rate: float, steps: int) -> PrivacyGuarantee:
    """The guarantee of a DP-SGD run with settings `dp` (a recipe.DPSettings with noise and delta set)."""
    epsilon = compute_epsilon(dp.noise_multiplier, sample_rate, steps, dp.delta, dp.accountant)
    return PrivacyGuarantee(
        epsilon,
        dp.delta,
        dp.accountant,
        dp.noise_multiplier,
        sample_rate,
        steps,
        dp.max_grad_norm,
        dp.insecure_seed is not None,
    )
