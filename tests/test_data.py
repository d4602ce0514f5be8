import json

import pytest

from privaudit.data import fingerprint, load_dataset, member_split
from privaudit.demo import demo_dataset
from privaudit.errors import PrivauditError


def test_loads_csv_tsv_jsonl_with_custom_columns(tmp_path):
    (tmp_path / "a.csv").write_text('utterance,intent\n"hello, world",Greet\nbye,Leave\n')
    (tmp_path / "a.tsv").write_text("utterance\tintent\nhello, world\tGreet\nbye\tLeave\n")
    (tmp_path / "a.jsonl").write_text(
        json.dumps({"utterance": "hello, world", "intent": "Greet"})
        + "\n\n"
        + json.dumps({"utterance": "bye", "intent": "Leave"})
        + "\n"
    )
    for name in ("a.csv", "a.tsv", "a.jsonl"):
        data = load_dataset(tmp_path / name, text_col="utterance", label_col="intent")
        assert data.texts == ["hello, world", "bye"]
        assert data.labels == ["Greet", "Leave"]


def test_snips_loads(snips_train):
    data = load_dataset(snips_train)
    assert len(data) == 13784
    assert len(data.label_names) == 7


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.csv", "", "empty"),
        ("cols.csv", "sentence,label\nhi,A\nyo,B\n", "no column 'text'"),
        ("blank.csv", "text,label\nhi,A\n  ,B\n", "blank.csv:3: empty text"),
        ("one.csv", "text,label\nhi,A\nyo,A\n", "only one class"),
        ("header.csv", "text,label\n", "no examples"),
        ("bad.jsonl", '{"text": "hi", "label": "A"}\n{oops\n', "bad.jsonl:2: invalid JSON"),
        ("data.txt", "text,label\nhi,A\n", "unsupported file type"),
        # An unquoted comma would have made " there" a new label; a missing field an empty one.
        ("comma.csv", "text,label\nhi,A\nhello, there,B\n", "comma.csv:3: 3 fields where the header has 2"),
        ("short.csv", "text,label\nhi,A\nhello\n", "short.csv:3: 1 fields where the header has 2"),
    ],
)
def test_bad_files_are_named_errors(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(PrivauditError, match=message):
        load_dataset(path)


def test_quoted_line_breaks_and_unicode_separators_survive(tmp_path):
    """A quoted CSV field keeps its newline; U+2028 (a line separator to str.splitlines) inside a CSV field
    or a JSON string is just a character."""
    csv_path = tmp_path / "d.csv"
    csv_path.write_text('text,label\n"first line\nsecond line",A\n"a\u2028b",B\n', encoding="utf-8")
    data = load_dataset(csv_path)
    assert data.texts == ["first line\nsecond line", "a\u2028b"] and data.labels == ["A", "B"]
    jsonl_path = tmp_path / "d.jsonl"
    jsonl_path.write_text('{"text": "a\u2028b", "label": "A"}\r\n{"text": "c", "label": "B"}\n', encoding="utf-8")
    assert load_dataset(jsonl_path).texts == ["a\u2028b", "c"]


def test_undecodable_bytes(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\ncaf\xe9,A\nhi,B\n".encode("latin-1"))
    with pytest.raises(PrivauditError, match="not valid UTF-8"):
        load_dataset(path)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "data file not found"),
        ("text,label\nhi,A\n", "only one class"),
        (b"text,label\n\xff\xfe,A\n", "not valid UTF-8"),
        ("text\nhi\n", "no column 'label'"),
        ('text,label\n"play song,A\nhello,B\n', "d.csv:2: a quote opened in this record is never closed"),
        ("folder", "is a folder: give the data file itself"),
    ],
)
def test_cli_reports_bad_data_on_one_line_with_exit_2(tmp_path, run_cli, content, message):
    path = tmp_path / "d.csv"
    if content == "folder":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    code, out, err = run_cli("train", path, "--out", tmp_path / "m.pt")
    assert code == 2
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.pt").exists()


def test_fingerprints_are_stable_and_label_sensitive():
    assert fingerprint("hello", "A") == fingerprint("hello", "A")
    assert fingerprint("hello", "A") != fingerprint("hello", "B")
    assert len(fingerprint("hello", "A")) == 16


def test_member_split_is_a_seeded_partition():
    members, heldout = member_split(101, 0.5, seed=3)
    assert sorted(list(members) + list(heldout)) == list(range(101))
    assert len(heldout) == 50
    again, _ = member_split(101, 0.5, seed=3)
    assert list(again) == list(members)
    other, _ = member_split(101, 0.5, seed=4)
    assert list(other) != list(members)


def test_demo_data_is_distinct_balanced_and_seeded():
    data = demo_dataset(700, seed=1)
    assert len(set(data.texts)) == 700
    assert len(data.label_names) == 7
    assert {data.labels.count(y) for y in data.label_names} == {100}
    assert demo_dataset(700, seed=1) == data
    assert demo_dataset(700, seed=2) != data
