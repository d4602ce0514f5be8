"""privaudit: audit trained text classifiers for privacy leakage.

Python API: `privaudit.api` (train, info, epsilon, mia, canary, report), `privaudit.audit` (the CI
audit of a config file), `privaudit.gate` (thresholds), `privaudit.accounting`, `privaudit.bundle`,
`privaudit.metrics`, `privaudit.attacks`, `privaudit.canaries`, `privaudit.reports`.
"""

__version__ = "0.1.0"
