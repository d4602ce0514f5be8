import json
import os
import zipfile

import numpy as np
import pytest
import torch

from privaudit.api import save_model, train
from privaudit.bundle import load_bundle, save_bundle
from privaudit.errors import PrivauditError
from privaudit.fileio import atomic_path
from privaudit.manifest import load_manifest, manifest_path
from privaudit.recipe import DPSettings, TrainingRecipe
from privaudit.source import demo_source, file_source, load_source
from privaudit.training import train_target

SMALL = demo_source(size=700, seed=5)
TINY = demo_source(size=200, seed=5)  # for what only has to run: 100 members


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


def test_dp_bert_tiny_trains_and_records_its_guarantee():
    recipe = TrainingRecipe(arch="bert-tiny", epochs=1, dp=DPSettings(max_grad_norm=1.0, noise_multiplier=1.0))
    bundle = train(TINY, recipe)
    p = bundle.privacy
    assert p.noise_multiplier == 1.0 and p.delta == 1e-5 and p.accountant == "pld"
    assert p.sample_rate == pytest.approx(64 / 100)
    assert p.steps == 2
    assert 0 < p.epsilon < 20


def test_dp_target_epsilon_is_met(tmp_path):
    recipe = TrainingRecipe(arch="cnn", epochs=2, dp=DPSettings(target_epsilon=3.0, delta=1e-5))
    bundle = train(SMALL, recipe)
    assert 2.8 < bundle.privacy.epsilon <= 3.0
    assert bundle.recipe.dp.noise_multiplier == bundle.privacy.noise_multiplier


def test_local_hugging_face_directory_fine_tunes(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    from privaudit.tokenization import train_tokenizer

    texts = load_source(SMALL).texts
    backend = train_tokenizer("wordpiece", texts, 500)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )
    config = BertConfig(
        vocab_size=backend.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=2,
    )
    model_dir = tmp_path / "hf-model"
    BertForSequenceClassification(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    recipe = TrainingRecipe(arch=f"hf:{model_dir}", epochs=1, lr=1e-3, dp=DPSettings(noise_multiplier=0.5))
    bundle = train(TINY, recipe, out=tmp_path / "hf.pt")
    loaded = load_bundle(tmp_path / "hf.pt")
    assert loaded.classifier.config.arch == "hf" and len(loaded.labels) == 7
    torch.testing.assert_close(loaded.classifier.logits(texts[:20]), bundle.classifier.logits(texts[:20]))


def test_unknown_hf_directory_is_a_user_error(tmp_path):
    with pytest.raises(PrivauditError, match="not a Hugging Face model directory"):
        train(SMALL, TrainingRecipe(arch=f"hf:{tmp_path}"))


def test_cli_train_dp_then_info(run_cli, tiny_csv, tmp_path):
    out = tmp_path / "dp.pt"
    code, stdout, err = run_cli("train", tiny_csv, "--out", out, "--epochs", "2", "--dp", "--noise-multiplier", "1")
    assert code == 0, err
    assert out.is_file()
    code, stdout, err = run_cli("info", out)
    assert code == 0, err
    assert "tiny.csv" in stdout and "PLD accountant" in stdout and "200 / 200" in stdout
    assert "hashed, 1,024 ids" in stdout and "operating-system entropy" in stdout  # what --dp makes the defaults


def test_cli_train_on_the_built_in_demo_data(run_cli, tmp_path):
    code, stdout, err = run_cli("train", "--demo", "--out", tmp_path / "demo.pt", "--epochs", "1")
    assert code == 0, err
    assert "built-in demo data set" in stdout and "1,750 / 1,750" in stdout and "learned" in stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--demo", "--noise-multiplier", "1"], "need --dp"),
        (["--demo", "--dp"], "exactly one of --noise-multiplier and --target-epsilon"),
        ([], "give a data file or --demo"),
        (["--demo", "--arch", "lstm"], "unknown architecture"),
    ],
)
def test_cli_usage_errors(run_cli, tmp_path, args, message):
    code, _, err = run_cli("train", *args, "--out", tmp_path / "m.pt")
    assert code == 2 and message in err and "Traceback" not in err


def test_cli_info_on_untrusted_file(run_cli, tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"x": Payload(tmp_path / "pwned")}, path)
    code, _, err = run_cli("info", path)
    assert code == 2 and "refusing to load" in err
    code, _, err = run_cli("info", tmp_path / "missing.pt")
    assert code == 2 and "model file not found" in err
