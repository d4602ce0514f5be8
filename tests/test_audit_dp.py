"""`privaudit audit` passes a DP-SGD model (its own file: it trains while test_audit.py's leaking model
does, on the other test worker)."""

import json

import pytest
from audit_configs import audit_via_cli


@pytest.fixture(scope="module")
def dp_audit(tmp_path_factory, tiny_csv, run_cli_module):
    return audit_via_cli(run_cli_module, tmp_path_factory.mktemp("dp"), True, tiny_csv)


def test_gate_passes_the_dp_model(dp_audit):
    (code, _, err), folder = dp_audit
    assert code == 0, err
    doc = json.loads((folder / "report" / "results.json").read_text())
    assert doc["gate"]["passed"] and doc["sections"]["mia"]["theoretical"]["noise_multiplier"] == 2.0
    assert doc["sections"]["canary"]["whitebox"]["canaries"] == 2000
