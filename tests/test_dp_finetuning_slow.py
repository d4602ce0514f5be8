"""Issue 16's goals on SNIPS with the default recipes (minutes; `make test-all`): DP-SGD at epsilon 8 keeps at
least 85% of the non-DP held-out accuracy, and at epsilon 1 stays clearly above the majority class, for
bert-tiny and for a pretrained Hugging Face directory built in the test."""

import dp_finetuning
import pytest

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("arch", ["bert-tiny", "pretrained"])
def test_dp_defaults_give_a_usable_model(snips_train, arch):
    runs = {r.epsilon: r for r in dp_finetuning.measure(arch, data=snips_train)}
    plain = runs[None].heldout_accuracy
    assert plain > 0.9
    assert runs[8.0].heldout_accuracy >= 0.85 * plain, dp_finetuning.table(list(runs.values()))
    majority = dp_finetuning.majority_rate(snips_train)
    assert runs[1.0].heldout_accuracy > majority + 0.3, dp_finetuning.table(list(runs.values()))
