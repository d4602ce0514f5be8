"""privaudit: audit trained text classifiers for privacy leakage.

Python API: `privaudit.api` (train, mia, canary, audit, report), `privaudit.accounting`,
`privaudit.bundle`, `privaudit.metrics`, `privaudit.attacks`, `privaudit.canaries`.
"""

__version__ = "0.1.0"
