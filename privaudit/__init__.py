"""privaudit: audit trained text classifiers for privacy leakage.

Python API: `privaudit.api` (train, info, epsilon), `privaudit.accounting`, `privaudit.bundle`.
"""

__version__ = "0.1.0"
