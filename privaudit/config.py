"""The `[tool.privaudit]` configuration that `privaudit audit` reads (pyproject.toml or privaudit.toml).

    [tool.privaudit]                 # in privaudit.toml the section may also be top-level
    model = "snips-cnn.pt"           # the model to audit (mia); or leave it out and give [tool.privaudit.train]
    data = "train.csv"               # optional: the training data, if it moved (and the canary data)
    seed = 0

    [tool.privaudit.target]          # or your own model and trainer (privaudit.usermodel), by import path
    loader = "mypkg.audit:load_model"  # called with `model` (if given); modules found beside this file too
    trainer = "mypkg.audit:train"    # shadow models; with [tool.privaudit.canary] and `data`, the canary models
    members = "members.csv"
    nonmembers = "nonmembers.csv"

    [tool.privaudit.train]           # how to train the model when `model` is not given
    arch = "cnn"                     # unset options: the architecture's defaults, with or without DP-SGD
    epochs = 20
    trainable = "all"                # or "head", "top:2"; physical_batch_size = 64 (passes of a larger batch)
    dp = { target_epsilon = 4.0 }

    [tool.privaudit.mia]
    attack = "lira"                  # shown first; every attack is computed and gated
    shadows = 16
    queries = 4                      # word-edit neighbours per example (augmented and label-only attacks)
    backend = "local"                # or "ray", with ray_address = "HEAD:6379" (none: a local Ray instance)

    [tool.privaudit.canary]
    template = "my pin code is {digit} {digit} {digit} {digit}"
    insert = 20                      # canaries per repeat count
    repeat = [1, 4, 16]
    references = 2                   # models without the canaries, for calibrated extraction (default 0)

    [tool.privaudit.sweep]           # train and audit at several epsilons (the train table's recipe otherwise)
    epsilons = [1.0, 4.0, inf]       # inf: without DP-SGD
    shadows = 4
    group_col = "dialect"            # a column of `data` (default: the label)
    min_accuracy = 0.85              # recommend the smallest epsilon meeting every constraint; fail if none does
    max_tpr_at_fpr = [[0.01, 0.05]]

    [tool.privaudit.thresholds]
    max_auc = 0.6
    max_tpr_at_fpr = [[0.01, 0.05]]
    max_empirical_epsilon = 4.0
    max_exposure = 10.0
    max_extraction_rate = 0.0

Every key is checked: an unknown key or a value of the wrong type is an error naming the key and file.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import PrivauditError
from .recipe import dp_options

_SCHEMA: dict[str, dict[str, type]] = {
    "": {
        "model": str,
        "data": str,
        "demo": bool,
        "seed": int,
        "device": str,
        "cache_dir": str,
        "train": dict,
        "mia": dict,
        "canary": dict,
        "sweep": dict,
        "target": dict,
        "thresholds": dict,
    },
    "train": {
        "arch": str,
        "epochs": int,
        "batch_size": int,
        "lr": float,
        "optimizer": str,
        "weight_decay": float,
        "dropout": float,
        "max_len": int,
        "vocab_size": int,
        "vocabulary": str,
        "heldout_fraction": float,
        "physical_batch_size": int,
        "trainable": str,
        "dp": dict,
    },
    "train.dp": {
        "noise_multiplier": float,
        "target_epsilon": float,
        "max_grad_norm": float,
        "delta": float,
        "accountant": str,
        "insecure_seed": int,
    },
    "mia": {
        "attack": str,
        "shadows": int,
        "queries": int,
        "epsilon_method": str,
        "workers": int,
        "backend": str,
        "ray_address": str,
    },
    "canary": {
        "template": str,
        "insert": int,
        "repeat": list,
        "label": str,
        "decoys": int,
        "audit_canaries": int,
        "gradient_canaries": int,
        "modiva_steps": int,
        "modiva_restarts": int,
        "references": int,
    },
    "target": {"loader": str, "trainer": str, "members": str, "nonmembers": str},
    "sweep": {
        "epsilons": list,
        "shadows": int,
        "attack": str,
        "queries": int,
        "canaries": int,
        "repeat": list,
        "group_col": str,
        "min_accuracy": float,
        "max_tpr_at_fpr": list,
        "workers": int,
    },
    "thresholds": {
        "max_auc": float,
        "max_tpr_at_fpr": list,
        "max_empirical_epsilon": float,
        "max_exposure": float,
        "max_extraction_rate": float,
    },
}


@dataclass
class AuditConfig:
    path: str
    model: str | None = None
    data: str | None = None
    demo: bool = False
    seed: int = 0
    device: str = "auto"
    cache_dir: str | None = None
    train: dict | None = None
    mia: dict | None = None
    canary: dict | None = None
    sweep: dict | None = None
    target: dict | None = None  # the user's own model: loader, trainer, members, nonmembers
    thresholds: dict = field(default_factory=dict)


def find_config(start: Path | None = None) -> Path:
    """privaudit.toml, or a pyproject.toml with a [tool.privaudit] section, in this folder."""
    folder = Path(start or Path.cwd())
    for name in ("privaudit.toml", "pyproject.toml"):
        candidate = folder / name
        if candidate.is_file() and _section(candidate, required=False) is not None:
            return candidate
    raise PrivauditError(f"no privaudit.toml or pyproject.toml with [tool.privaudit] in {folder}; give --config")


def _section(path: Path, required: bool = True) -> dict | None:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PrivauditError(f"{path}: not valid TOML ({exc})") from None
    tool = doc.get("tool", {})
    section = tool.get("privaudit") if isinstance(tool, dict) else None
    if section is not None and not isinstance(section, dict):  # e.g. [[tool.privaudit]], an array of tables
        raise PrivauditError(f"{path}: [tool.privaudit] must be one table")
    if section is None and path.name != "pyproject.toml":
        section = {k: v for k, v in doc.items() if k != "tool"} or None
    if section is None and required:
        raise PrivauditError(f"{path}: no [tool.privaudit] section")
    return section


def load_config(path: str | Path | None = None) -> AuditConfig:
    path = Path(path) if path is not None else find_config()
    if not path.is_file():
        raise PrivauditError(f"config file not found: {path}")
    section = _section(path)
    assert section is not None  # _section raises when the file has none
    _validate(section, "", path)
    base = path.parent
    config = AuditConfig(str(path), **{k: v for k, v in section.items()})
    # Paths in the file are relative to the file, so the audit runs the same from any folder.
    for key in ("model", "data", "cache_dir"):
        if getattr(config, key) == "":
            raise PrivauditError(f"{path}: `{key}` is empty: give a path, or leave the key out")
    if config.model is not None:
        config.model = str(base / config.model)
    if config.data is not None:
        config.data = str(base / config.data)
    if config.cache_dir is not None:
        config.cache_dir = str(base / config.cache_dir)
    if config.target is not None:
        if "loader" not in config.target:
            raise PrivauditError(f"{path}: [tool.privaudit.target] needs `loader` (package.module:function)")
        for key in ("members", "nonmembers"):
            if key in config.target:
                config.target[key] = str(base / config.target[key])
        if config.canary is not None and "trainer" not in config.target:
            raise PrivauditError(
                f"{path}: the canary audit trains models with the canaries planted: give [tool.privaudit.target] "
                "`trainer` (package.module:function) too"
            )
        if config.canary is not None and config.data is None and not config.demo:
            raise PrivauditError(
                f'{path}: the canary audit through your trainer plants the canaries in `data`: give data = "..."'
            )
    if config.train is not None and "dp" in config.train:
        # `dp = {}` or both noise settings: refused here, as the CLI refuses them, never trained without DP.
        try:
            dp_options(True, **config.train["dp"])
        except PrivauditError as exc:
            raise PrivauditError(f"{path}: [tool.privaudit.train] dp: {exc}") from None
    audits_a_model = config.mia is not None or config.canary is not None
    if audits_a_model and config.model is None and config.train is None and not config.demo and not config.target:
        raise PrivauditError(f"{path}: [tool.privaudit] needs `model`, a [tool.privaudit.train] table, or demo = true")
    if not audits_a_model and config.sweep is None:
        raise PrivauditError(
            f"{path}: nothing to audit: add [tool.privaudit.mia], [tool.privaudit.canary] and/or [tool.privaudit.sweep]"
        )
    return config


def _validate(table: dict, where: str, path: Path) -> None:
    schema = _SCHEMA[where]
    for key, value in table.items():
        name = f"{where}.{key}" if where else key
        if key not in schema:
            raise PrivauditError(
                f"{path}: unknown key `{name}` in [tool.privaudit] (allowed here: {', '.join(sorted(schema))})"
            )
        expected = schema[key]
        ok = isinstance(value, expected) or (
            expected is float and isinstance(value, int) and not isinstance(value, bool)
        )
        if expected is int and isinstance(value, bool):
            ok = False
        if not ok:
            raise PrivauditError(f"{path}: `{name}` must be a {expected.__name__}, got {value!r}")
        if expected is dict:
            _validate(value, name, path)
    if where == "sweep" and "epsilons" in table:
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in table["epsilons"]):
            raise PrivauditError(f"{path}: `sweep.epsilons` must be a list of numbers (inf: without DP-SGD)")
    if where in ("thresholds", "sweep") and "max_tpr_at_fpr" in table:
        for pair in table["max_tpr_at_fpr"]:
            if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, (int, float)) for x in pair)):
                raise PrivauditError(f"{path}: `{where}.max_tpr_at_fpr` must be a list of [fpr, tpr] pairs")
    if where in ("canary", "sweep") and "repeat" in table:
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in table["repeat"]):
            raise PrivauditError(f"{path}: `{where}.repeat` must be a list of integers")
