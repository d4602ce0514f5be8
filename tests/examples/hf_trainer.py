"""A user's Hugging Face model fine-tuned with `transformers.Trainer` from a local pretrained checkpoint.

    BASE_MODEL=./my-base-model privaudit mia ./finetuned --loader examples.hf_trainer:load_model \
        --trainer examples.hf_trainer:train --members members.csv --nonmembers nonmembers.csv
"""

from __future__ import annotations

import os
import tempfile

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

EPOCHS, BATCH_SIZE, LR, MAX_LEN = 8, 16, 5e-3, 64


def base_model() -> str:
    """The pretrained checkpoint every fine-tuning starts from (the target's and the shadows')."""
    return os.environ.get("BASE_MODEL", "base-model")


class HfClassifier:
    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer
        self.labels = [model.config.id2label[i] for i in range(model.config.num_labels)]

    @torch.no_grad()
    def logits(self, texts: list[str]) -> torch.Tensor:
        self.model.eval()
        batches = []
        for start in range(0, len(texts), 128):
            inputs = self.tokenizer(
                texts[start : start + 128], padding=True, truncation=True, max_length=MAX_LEN, return_tensors="pt"
            )
            batches.append(self.model(**inputs).logits)
        return torch.cat(batches)


class Encoded(torch.utils.data.Dataset):
    def __init__(self, tokenizer, texts: list[str], targets: list[int]):
        self.inputs = tokenizer(texts, truncation=True, max_length=MAX_LEN)
        self.targets = targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> dict:
        return {**{k: v[i] for k, v in self.inputs.items()}, "labels": self.targets[i]}


def train(texts: list[str], labels: list[str], seed: int) -> HfClassifier:
    names = sorted(set(labels))
    tokenizer = AutoTokenizer.from_pretrained(base_model())
    model = AutoModelForSequenceClassification.from_pretrained(
        base_model(),
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        ignore_mismatched_sizes=True,  # a new classification head for these labels
    )
    with tempfile.TemporaryDirectory() as scratch:
        arguments = TrainingArguments(
            output_dir=scratch,
            num_train_epochs=EPOCHS,
            per_device_train_batch_size=BATCH_SIZE,
            learning_rate=LR,
            seed=seed,
            save_strategy="no",
            logging_strategy="no",
            report_to="none",
            disable_tqdm=True,
            use_cpu=True,
        )
        dataset = Encoded(tokenizer, texts, [names.index(y) for y in labels])
        Trainer(
            model=model, args=arguments, train_dataset=dataset, data_collator=DataCollatorWithPadding(tokenizer)
        ).train()
    return HfClassifier(model, tokenizer)


def save(model: HfClassifier, path: str) -> None:
    model.model.save_pretrained(path)
    model.tokenizer.save_pretrained(path)


def load_model(path: str) -> HfClassifier:
    return HfClassifier(AutoModelForSequenceClassification.from_pretrained(path), AutoTokenizer.from_pretrained(path))
