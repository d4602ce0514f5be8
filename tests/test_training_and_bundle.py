"""Model bundles and the trainer: round trip, no membership in the file, refused files, determinism."""

import json
import os
import stat
import zipfile

import numpy as np
import pytest
import torch

from privaudit.api import save_model, train
from privaudit.bundle import load_bundle, save_bundle
from privaudit.errors import PrivauditError
from privaudit.fileio import atomic_path, write_text_atomic
from privaudit.manifest import load_manifest, manifest_path
from privaudit.recipe import TrainingRecipe
from privaudit.source import demo_source, file_source, load_source
from privaudit.training import train_target

SMALL = demo_source(size=700, seed=5)


@pytest.fixture(scope="module")
def cnn_bundle():
    return train(SMALL, TrainingRecipe(arch="cnn", epochs=3, seed=1), split_seed=1)


def test_bundle_round_trip_gives_the_same_model(cnn_bundle, tmp_path):
    path = tmp_path / "m.pt"
    save_model(cnn_bundle, path)
    loaded = load_bundle(path)
    texts = load_source(SMALL).texts[:50]
    torch.testing.assert_close(loaded.classifier.logits(texts), cnn_bundle.classifier.logits(texts))
    assert loaded.recipe == cnn_bundle.recipe
    assert loaded.training_examples == 350 and loaded.manifest is None
    manifest = load_manifest(manifest_path(path), path)
    assert manifest.data_source == SMALL
    assert len(manifest.member_fingerprints) == len(manifest.heldout_fingerprints) == 350
    assert not set(manifest.member_fingerprints) & set(manifest.heldout_fingerprints)
    assert loaded.metrics["train_accuracy"] > 0.8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.audit.json", "m.pt"], "no temporary file left behind"


def test_model_file_carries_no_membership(cnn_bundle, tmp_path):
    """Nothing in the shipped file identifies a member: no fingerprint (keyed or the old unkeyed kind), no
    data hash, no key, no split seed that would replay the member/held-out split."""
    path = tmp_path / "m.pt"
    save_model(cnn_bundle, path)
    manifest = load_manifest(manifest_path(path))
    with zipfile.ZipFile(path) as archive:
        content = b"".join(archive.read(name) for name in archive.namelist()).decode("latin-1")
    data = load_source(SMALL)
    assert manifest.key not in content
    assert not any(fp in content for fp in manifest.member_fingerprints + data.fingerprints())
    assert "split" not in json.dumps(cnn_bundle.recipe.to_dict())


def test_member_split_is_secret_unless_seeded():
    data = load_source(SMALL)
    splits = [train_target(data, TrainingRecipe(epochs=1), split_seed=s).member_indices for s in (None, None, 3, 3)]
    assert not np.array_equal(splits[0], splits[1]) and np.array_equal(splits[2], splits[3])


def test_learned_vocabularies_are_the_same_every_time():
    """The same texts give the same tokens and ids (the tokenizers library's WordPiece trainer did not:
    it breaks ties in a randomly seeded hash order), so the same seed gives the same model."""
    from privaudit.tokenization import train_tokenizer

    texts = load_source(SMALL).texts
    for kind in ("word", "wordpiece"):
        first, second = (train_tokenizer(kind, texts, 8000).get_vocab() for _ in range(2))
        assert first == second
    assert train_tokenizer("wordpiece", texts, 8000).encode("my pin is 7 3").tokens[-3:] == ["7", "3", "[SEP]"]


def test_training_is_deterministic_under_seed(cnn_bundle):
    again = train(SMALL, TrainingRecipe(arch="cnn", epochs=3, seed=1), split_seed=1)
    other = train(SMALL, TrainingRecipe(arch="cnn", epochs=3, seed=2), split_seed=1)
    a, b, c = (x.classifier.model.state_dict() for x in (cnn_bundle, again, other))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


class Payload:
    """Unpickling this object runs a command: exactly what a bundle loader must never do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_refuses_pickled_objects_without_running_them(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "privaudit-bundle", "format_version": 1, "metadata": Payload(marker)}, path)
    with pytest.raises(PrivauditError, match="refusing to load"):
        load_bundle(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"not a zip at all", "not a readable model file"),
        (None, "not a privaudit model bundle"),
    ],
)
def test_corrupt_or_foreign_files_are_named(tmp_path, content, message):
    path = tmp_path / "m.pt"
    if content is None:
        torch.save({"weights": torch.zeros(3)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(PrivauditError, match=message):
        load_bundle(path)


def test_truncated_bundle_is_refused(cnn_bundle, tmp_path):
    path = tmp_path / "m.pt"
    save_bundle(cnn_bundle, path)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(PrivauditError, match="not a readable model file"):
        load_bundle(path)


def test_a_damaged_model_file_is_refused_never_a_different_model(cnn_bundle, tmp_path, corruptions=200):
    """Single-byte corruptions anywhere in the file: each is refused as unreadable or damaged, or (a byte
    nothing reads, such as zip padding) loads the very same weights and metadata."""
    path = tmp_path / "m.pt"
    save_bundle(cnn_bundle, path)
    original = path.read_bytes()
    reference = load_bundle(path)
    rng = np.random.default_rng(0)
    refused = 0
    for offset in rng.choice(len(original), size=corruptions, replace=False):
        damaged = bytearray(original)
        damaged[offset] ^= int(rng.integers(1, 256))
        path.write_bytes(bytes(damaged))
        try:
            loaded = load_bundle(path)
        except PrivauditError:
            refused += 1
            continue
        same = loaded.classifier.model.state_dict()
        assert all(torch.equal(v, same[k]) for k, v in reference.classifier.model.state_dict().items()), offset
        assert loaded.metadata() == reference.metadata(), offset
    assert refused >= corruptions * 0.9  # almost every byte of the file is read


def _rewritten(bundle, path, change):
    """The bundle at `path` with its metadata changed by `change` and the digest made to match (a file
    written by a buggy or hostile tool, not a damaged one)."""
    from privaudit.bundle import FORMAT, FORMAT_VERSION, content_digest

    meta = bundle.metadata()
    change(meta)
    state = {k: v.detach().contiguous() for k, v in bundle.classifier.model.state_dict().items()}
    text = json.dumps(meta)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "metadata": text, "state_dict": state}
    torch.save({**payload, "digest": content_digest(text, state)}, path)
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m.pop("labels"), "lacks the field `labels`"),
        (lambda m: m.update(labels="ab"), "field `labels` must be a list of label names"),
        (lambda m: m.update(labels=["a", "a"]), "non-empty list of distinct label names"),
        (lambda m: m.update(tokenizer="{not json"), "field `tokenizer` is not valid"),
        (lambda m: m.update(training_examples=True), "field `training_examples` must be a whole number"),
        (lambda m: m["model_config"].update(embed_dim=7), "the weights do not fit the bundle's model configuration"),
        (lambda m: m.update(recipe={"no_such_setting": 1}), "field `recipe`"),
    ],
)
def test_bundle_fields_are_checked_one_by_one(cnn_bundle, tmp_path, run_cli, change, message):
    path = _rewritten(cnn_bundle, tmp_path / "m.pt", change)
    with pytest.raises(PrivauditError, match=message.replace("(", r"\(")):
        load_bundle(path)
    code, _, err = run_cli("info", path)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_outputs_honour_the_umask_and_the_manifest_stays_private(cnn_bundle, tmp_path):
    previous = os.umask(0o022)
    try:
        path = tmp_path / "m.pt"
        save_model(cnn_bundle, path)
        write_text_atomic(tmp_path / "report.md", "# report\n")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "report.md").stat().st_mode) == 0o644
    assert stat.S_IMODE(manifest_path(path).stat().st_mode) == 0o600  # key and member fingerprints


def test_atomic_write_leaves_nothing_on_interrupt(tmp_path):
    target = tmp_path / "out.pt"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_changed_or_moved_data_file_is_detected(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\nhello there,A\nbye now,B\n")
    source = file_source(path)
    assert len(load_source(source)) == 2
    path.write_text("text,label\nhello there,A\nbye now,A\n")
    with pytest.raises(PrivauditError, match="has changed"):
        load_source(source)
    path.unlink()
    with pytest.raises(PrivauditError, match="no longer exists"):
        load_source(source)


def test_cli_info_on_untrusted_file(run_cli, tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"x": Payload(tmp_path / "pwned")}, path)
    code, _, err = run_cli("info", path)
    assert code == 2 and "refusing to load" in err
    code, _, err = run_cli("info", tmp_path / "missing.pt")
    assert code == 2 and "model file not found" in err
