"""Package versions and run details recorded with every result, so a run can be reproduced."""

from __future__ import annotations

import platform
from datetime import UTC, datetime
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


def run_section(timings: dict) -> dict:
    """What differs between two runs of the same settings: when it ran and how long each part took.

    Everything else in a result is a function of the settings, the data and the seeds."""
    return {"finished_at": datetime.now(UTC).isoformat(timespec="seconds"), "timings": timings}
