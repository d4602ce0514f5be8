"""Canary templates: public words with secret slots over declared alphabets.

    "my pin code is {digit} {digit} {digit} {digit}"   4 digit slots: 10^4 secrets
    "call me at {digit}x10"                             10 digit slots, written space-separated
    "my password is {word}"                             one slot over the built-in word list

Digits and letters are written space-separated (adjacent slots such as "{digit}{digit}" too), so each
is one token for word-level and WordPiece vocabularies alike. The size of the secret space is known exactly.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass

from privaudit.errors import PrivauditError

ALPHABETS: dict[str, tuple[str, ...]] = {
    "digit": tuple("0123456789"),
    "letter": tuple("abcdefghijklmnopqrstuvwxyz"),
    "word": (
        "apple",
        "river",
        "stone",
        "tiger",
        "cloud",
        "piano",
        "maple",
        "ocean",
        "pepper",
        "silver",
        "rocket",
        "garden",
        "winter",
        "falcon",
        "velvet",
        "canyon",
        "lemon",
        "marble",
        "harbor",
        "meadow",
        "comet",
        "willow",
        "copper",
        "ember",
        "glacier",
        "orchid",
        "thunder",
        "saffron",
        "island",
        "lantern",
        "quartz",
        "zephyr",
    ),
}
_SLOT = re.compile(r"\{(\w+)\}(?:x(\d+))?")
# More secret positions than this is no canary a text classifier reads (its inputs are tens of tokens),
# and "{digit}x1000000" would otherwise run for minutes before anything said so.
MAX_SLOTS = 32


@dataclass(frozen=True)
class Template:
    """Alternating public text and slots: parts[i] is a str (public) or an alphabet name (a slot)."""

    text: str
    parts: tuple[tuple[str, str], ...]  # ("public", text) or ("slot", alphabet)

    @property
    def slots(self) -> list[str]:
        return [value for kind, value in self.parts if kind == "slot"]

    @property
    def alphabets(self) -> list[tuple[str, ...]]:
        return [ALPHABETS[name] for name in self.slots]

    @property
    def symbols(self) -> tuple[str, ...]:
        """Every alphabet symbol the slots may hold (public: the vocabulary must have each as a token)."""
        return tuple(dict.fromkeys(symbol for alphabet in self.alphabets for symbol in alphabet))

    @property
    def space_size(self) -> int:
        return math.prod(len(a) for a in self.alphabets)

    @property
    def public_words(self) -> str:
        return " ".join(value.strip() for kind, value in self.parts if kind == "public" and value.strip())

    def render(self, secret: tuple[str, ...]) -> str:
        values = iter(secret)
        return "".join(value if kind == "public" else next(values) for kind, value in self.parts)

    def all_secrets(self):
        return itertools.product(*self.alphabets)

    def index(self, secret: tuple[str, ...]) -> int:
        """The secret's position in `all_secrets()` order."""
        position = 0
        for alphabet, symbol in zip(self.alphabets, secret):
            position = position * len(alphabet) + alphabet.index(symbol)
        return position


def parse_template(text: str) -> Template:
    parts: list[tuple[str, str]] = []
    position = 0
    for match in _SLOT.finditer(text):
        name, repeat = match.group(1), match.group(2)
        if name not in ALPHABETS:
            raise PrivauditError(f"template {text!r}: unknown slot {{{name}}} (use {', '.join(ALPHABETS)})")
        if match.start() > position:
            parts.append(("public", text[position : match.start()]))
        elif parts and parts[-1][0] == "slot":  # "{digit}{digit}": adjacent slots are written apart
            parts.append(("public", " "))
        count = int(repeat) if repeat else 1
        if count < 1:
            raise PrivauditError(f"template {text!r}: slot repeat must be at least 1")
        if sum(kind == "slot" for kind, _ in parts) + count > MAX_SLOTS:
            raise PrivauditError(f"template {text!r}: more than {MAX_SLOTS} secret slots")
        for i in range(count):
            if i:
                parts.append(("public", " "))
            parts.append(("slot", name))
        position = match.end()
    if position < len(text):
        parts.append(("public", text[position:]))
    template = Template(text, tuple(parts))
    if not template.slots:
        raise PrivauditError(f"template {text!r} has no secret slot (e.g. {{digit}})")
    return template


DEFAULT_TEMPLATE = "my pin code is {digit} {digit} {digit} {digit}"
