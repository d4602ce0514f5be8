"""The reliability catalogue (tests/catalogue.py) as one slow-lane test: every case as the README promises."""

import pytest
from catalogue import run_catalogue


@pytest.mark.slow
def test_every_catalogue_case_behaves_as_the_readme_promises():
    catalogue, failures = run_catalogue()
    assert len(catalogue) >= 100
    assert failures == {}, "\n".join(f"{' '.join(catalogue[i].argv)}: {'; '.join(f)}" for i, f in failures.items())
