"""Parsing of the option values that are lists on the command line (`--repeat 1,4,16`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from .errors import PrivauditError

T = TypeVar("T")


def comma_separated(text: str, convert: Callable[[str], T], option: str, example: str) -> list[T]:
    """'1, 4,16' -> [1, 4, 16]; a value `convert` refuses is a usage error naming the option."""
    try:
        return [convert(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise PrivauditError(f"{option} takes values such as {example}, got {text!r}") from None


MAX_SEED = 2**31 - 1  # an audit's --seed: shadow and reference models derive theirs as seed * 1000 + k
MAX_RECIPE_SEED = 2**62  # a recipe's seed (derived ones too): within what every generator takes (int64)


def check_seed(seed: int, limit: int = MAX_SEED) -> None:
    if not 0 <= seed <= limit:
        raise PrivauditError(f"--seed must be an integer from 0 to {limit}, got {seed}")
