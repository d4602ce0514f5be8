"""An output that would replace an input is refused up front (exit 2), and the input stays intact: the
data-loss cases of the reliability catalogue (train --out DATA, mia --output MODEL, report --output
RESULTS), also when the output reaches the input through a link."""

import os

import pytest


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("text,label\n" + "".join(f"play song {i},{'AB'[i % 2]}\n" for i in range(40)))
    return path


def test_train_out_onto_its_data(run_cli, data_file):
    before = data_file.read_bytes()
    code, _, err = run_cli("train", data_file, "--out", data_file, "--epochs", "1")
    assert code == 2 and "would destroy it" in err
    assert data_file.read_bytes() == before


def test_train_out_onto_its_data_through_a_link(run_cli, data_file, tmp_path):
    link = tmp_path / "link.pt"
    os.symlink(data_file, link)
    before = data_file.read_bytes()
    code, _, err = run_cli("train", data_file, "--out", link, "--epochs", "1")
    assert code == 2 and data_file.read_bytes() == before


def test_mia_output_onto_the_model_and_report_onto_its_results(run_cli, tmp_path):
    model = tmp_path / "m.pt"
    model.write_bytes(b"model bytes")
    code, _, err = run_cli("mia", model, "--output", model)
    assert code == 2 and "would destroy it" in err and model.read_bytes() == b"model bytes"
    results = tmp_path / "results.json"
    results.write_text('{"schema_version": 1, "kind": "mia"}')
    code, _, err = run_cli("report", results, "--output", results)
    assert code == 2 and results.read_text() == '{"schema_version": 1, "kind": "mia"}'
    code, _, _ = run_cli("mia", tmp_path / "results.json", "--report", tmp_path)  # report folder's results.json
    assert code == 2 and results.read_text() == '{"schema_version": 1, "kind": "mia"}'
