"""Package versions recorded with every result, so a run can be reproduced."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

_PACKAGES = ("privaudit", "torch", "transformers", "tokenizers", "dp-accounting", "numpy", "scipy")


def package_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found
