"""privaudit: audit trained text classifiers for privacy leakage.

Python API: `privaudit.api` (train, info, epsilon, mia, canary, report), `privaudit.audit` (the CI
audit of a config file), `privaudit.gate` (thresholds), `privaudit.accounting`, `privaudit.bundle`,
`privaudit.metrics`, `privaudit.attacks`, `privaudit.canaries`, `privaudit.reports`.
"""

import os

__version__ = "0.1.0"

# torch's OpenMP worker threads spin for 300,000 iterations (libgomp's default) after each parallel operation
# before they sleep, so on a small CPU no core is ever free between torch's operations: DP-SGD's noise, drawn
# in two halves on two threads (dpsgd.GaussianNoise), then gained nothing. A third of that spin frees the core
# and leaves ordinary training's step time as it was; a tenth slowed bert-tiny's by 3% (README "Performance").
# libgomp reads this once, when torch is first imported: a wait policy or spin count already set wins, and this
# does nothing if torch was imported before privaudit.
if "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "100000"
