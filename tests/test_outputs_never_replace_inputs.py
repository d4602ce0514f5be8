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


def test_unwritable_or_full_destinations_are_refused_before_any_work(run_cli, data_file, tmp_path, monkeypatch):
    # /sys takes no new file (even for root): refused before training, naming the path.
    code, _, err = run_cli("train", data_file, "--out", "/sys/privaudit/m.pt", "--epochs", "1")
    assert code == 2 and "/sys/privaudit/m.pt" in err and "does not take new files" in err
    code, _, err = run_cli("mia", "--demo", "--report", "/sys/privaudit-report")
    assert code == 2 and "does not take new files" in err
    import privaudit.fileio as fileio

    monkeypatch.setattr(fileio.shutil, "disk_usage", lambda path: Full())
    code, _, err = run_cli("train", data_file, "--out", tmp_path / "m.pt", "--epochs", "1")
    assert code == 2 and "MB free" in err and not (tmp_path / "m.pt").exists()


class Full:
    free = 1 * 2**20


def test_a_report_folder_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    import pathlib

    from privaudit.errors import PrivauditError
    from privaudit.fileio import write_texts_together

    folder = tmp_path / "report"
    folder.mkdir()
    (folder / "report.md").write_text("old report")
    real_write = pathlib.Path.write_text
    calls = []

    def fill_up_on_the_second_file(self, text, **kwargs):
        calls.append(self)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_write(self, text, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", fill_up_on_the_second_file)
    files = {folder / "results.json": "{}", folder / "report.md": "new", folder / "report.html": "<p>"}
    with pytest.raises(PrivauditError, match="No space left on device.*nothing was written"):
        write_texts_together(files)
    monkeypatch.undo()
    assert sorted(p.name for p in folder.iterdir()) == ["report.md"]  # no new file, no temporary left
    assert (folder / "report.md").read_text() == "old report"
