"""What to do next: a built-in card per rice disease class, in English and Vietnamese, with its sources.

``cards.json`` (package data) holds one card per class of the public rice datasets the project
meets (Paddy Doctor's ten, sheath_blight, healthy). A model's classes are matched to cards by name
or alias, ignoring case, spaces, hyphens and underscores ("Bacterialblight" -> bacterial_leaf_blight).
Each card says, per language: the local name and its regional synonyms, signs to check by eye,
what to do now (cultural management first), a pesticide only where the cited source names one,
and when to call the extension service.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

CARDS_FILE = Path(__file__).parent / "cards.json"
LANGUAGES = ("en", "vi")
_NOT_ALNUM = re.compile(r"[\W_]+", re.UNICODE)


@dataclass(frozen=True)
class CardText:
    """One card in one language."""

    name: str
    synonyms: tuple[str, ...]
    signs: tuple[str, ...]
    act_now: tuple[str, ...]
    chemical: str  # "" unless the source names a pesticide; always shown with "follow the label"
    call_extension: str


@dataclass(frozen=True)
class Source:
    title: str
    url: str


@dataclass(frozen=True)
class Card:
    key: str
    aliases: tuple[str, ...]
    sources: tuple[Source, ...]
    text: dict[str, CardText]

    def in_language(self, language: str) -> CardText:
        """The card's text in ``language``, or in English where the card lacks it."""
        return self.text.get(language) or self.text["en"]


def normalise(name: str) -> str:
    """A class name as matching sees it: lower case, letters and digits only ("Brown Spot" -> "brownspot")."""
    return _NOT_ALNUM.sub("", name).casefold()


def _card(key: str, raw: dict) -> Card:
    text = {
        language: CardText(
            name=body["name"],
            synonyms=tuple(body.get("synonyms", ())),
            signs=tuple(body["signs"]),
            act_now=tuple(body["act_now"]),
            chemical=body.get("chemical", ""),
            call_extension=body["call_extension"],
        )
        for language, body in raw.items()
        if language in LANGUAGES
    }
    sources = tuple(Source(s["title"], s["url"]) for s in raw["sources"])
    return Card(key, tuple(raw.get("aliases", ())), sources, text)


@lru_cache(maxsize=4)
def load_cards(path: str | Path = CARDS_FILE) -> dict[str, Card]:
    """Every card of ``path`` by its key (a class name)."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    return {key: _card(key, body) for key, body in raw["cards"].items()}


def card_index(cards: dict[str, Card]) -> dict[str, Card]:
    """Normalised key and alias -> card."""
    index: dict[str, Card] = {}
    for card in cards.values():
        for name in (card.key, *card.aliases):
            index.setdefault(normalise(name), card)
    return index


def match_cards(classes: list[str], cards: dict[str, Card] | None = None) -> dict[str, Card]:
    """The card of each of a model's classes that has one, by name or alias."""
    index = card_index(load_cards() if cards is None else cards)
    return {name: index[normalise(name)] for name in classes if normalise(name) in index}


def class_name(label: str, language: str, cards: dict[str, Card]) -> str:
    """A class as the user reads it: the card's local name ("Bệnh đạo ôn"), else the label with spaces."""
    card = cards.get(label)
    return card.in_language(language).name if card else label.replace("_", " ")
