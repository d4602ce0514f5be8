"""Training recipes end to end: DP-SGD on BERT, a calibrated epsilon, Hugging Face directories, and the
`train` and `info` commands."""

import pytest
import torch

from privaudit.api import train
from privaudit.bundle import load_bundle
from privaudit.errors import PrivauditError
from privaudit.recipe import DPSettings, TrainingRecipe
from privaudit.source import demo_source, load_source

SMALL = demo_source(size=700, seed=5)
TINY = demo_source(size=200, seed=5)  # for what only has to run: 100 members


def test_dp_bert_tiny_trains_and_records_its_guarantee():
    recipe = TrainingRecipe(arch="bert-tiny", epochs=1, dp=DPSettings(max_grad_norm=1.0, noise_multiplier=1.0))
    bundle = train(TINY, recipe)
    p = bundle.privacy
    assert p.noise_multiplier == 1.0 and p.delta == 1e-5 and p.accountant == "pld"
    assert p.sample_rate == pytest.approx(64 / 100)
    assert p.steps == 2
    assert 0 < p.epsilon < 20


def test_dp_target_epsilon_is_met(tmp_path):
    # Calibration by either accountant from the safe side is test_accounting's; here, that training
    # calibrates and records what it used (RDP: the fast accountant).
    recipe = TrainingRecipe(arch="cnn", epochs=2, dp=DPSettings(target_epsilon=3.0, delta=1e-5, accountant="rdp"))
    bundle = train(SMALL, recipe)
    assert 2.8 < bundle.privacy.epsilon <= 3.0 and bundle.privacy.accountant == "rdp"
    assert bundle.recipe.dp.noise_multiplier == bundle.privacy.noise_multiplier


def test_local_hugging_face_directory_fine_tunes(tmp_path):
    from hf_checkpoints import save_tiny_bert

    texts = load_source(SMALL).texts
    model_dir = save_tiny_bert(tmp_path / "hf-model", texts, None, vocab=500)
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
