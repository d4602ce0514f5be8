"""Property-based fuzzing of what users hand privaudit: data files and config files.

Whatever the bytes, the outcome is one of the README's promises: it works (exit 0), or it is refused with
exit 2 and one line, no traceback, no output left behind, the input untouched. The examples are drawn
deterministically (derandomize), so a run never fails because of the draw it happened to make.
"""

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privaudit.config import load_config
from privaudit.errors import PrivauditError


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )


# Pieces that broke or nearly broke real readers: delimiters, quotes, newlines inside fields, Unicode
# line separators, BOMs, NULs, markup.
CELLS = st.text(alphabet='ab ,;"\t\n\r\u2028\u2029\ufeff\x00é[/b]<>{}', max_size=10)
HEADERS = st.sampled_from(["text,label", "label,text", "text;label", "txt,label", "text", "", '"text","label"'])


@st.composite
def data_files(draw) -> bytes:
    if draw(st.booleans()) and draw(st.booleans()):
        return draw(st.binary(max_size=300))
    rows = draw(st.lists(st.tuples(CELLS, st.sampled_from(["A", "B", "", "C,D", '"A"'])), max_size=30))
    lines = [draw(HEADERS), *(f"{text},{label}" for text, label in rows)]
    return "\n".join(lines).encode(draw(st.sampled_from(["utf-8", "utf-16", "latin-1"])), errors="replace")


@fuzz(20)
@given(content=data_files(), suffix=st.sampled_from([".csv", ".tsv", ".jsonl"]))
def test_any_data_file_trains_or_is_refused_in_one_line(tmp_path_factory, run_cli, content, suffix):
    folder = tmp_path_factory.mktemp("fuzz")
    data = folder / f"data{suffix}"
    data.write_bytes(content)
    out = folder / "m.pt"
    code, _, err = run_cli("train", data, "--out", out, "--epochs", "1", "--batch-size", "4", "--max-len", "8")
    assert code in (0, 2), err
    assert "Traceback" not in err
    if code == 2:
        assert len(err.strip().splitlines()) == 1, err
        assert not out.exists()
    assert data.read_bytes() == content
    assert not [name for name in os.listdir(folder) if name.endswith(".tmp")]  # nothing half-written


TOML_VALUES = st.sampled_from(
    ['"cnn"', "20", "-1", "0", "1e400", "nan", "true", '""', "[]", "[[0.01, 0.05]]", "[[0.5]]", "{}", '"x"', "3.5"]
)
TOML_KEYS = st.sampled_from(
    [
        "model",
        "data",
        "seed",
        "cache_dir",
        "arch",
        "epochs",
        "dp",
        "attack",
        "shadows",
        "queries",
        "insert",
        "repeat",
        "template",
        "max_auc",
        "max_tpr_at_fpr",
        "max_exposure",
        "unknown",
        "device",
    ]
)
SECTIONS = st.sampled_from(
    [
        "[tool.privaudit]",
        "[tool.privaudit.train]",
        "[tool.privaudit.mia]",
        "[tool.privaudit.canary]",
        "[tool.privaudit.thresholds]",
        "[tool.privaudit.other]",
        "[tool]",
        "[[tool.privaudit]]",
    ]
)


@fuzz(200)
@given(
    lines=st.lists(
        st.one_of(SECTIONS, st.builds(lambda k, v: f"{k} = {v}", TOML_KEYS, TOML_VALUES), st.text(max_size=15)),
        max_size=12,
    )
)
def test_any_config_file_loads_or_is_refused_by_name(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("config") / "privaudit.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    try:
        load_config(path)
    except PrivauditError as exc:
        assert str(path) in str(exc) or "config" in str(exc)
        assert "\n" not in str(exc).strip()
