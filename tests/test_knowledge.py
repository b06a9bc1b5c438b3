"""The built-in disease cards: one per class of the public rice datasets, complete in both languages, sourced."""

from __future__ import annotations

import json
from urllib.parse import urlparse

import pytest

from paddyclf.knowledge import CARDS_FILE, LANGUAGES, load_cards, match_cards, normalise

PADDY_DOCTOR = [
    "bacterial_leaf_blight", "bacterial_leaf_streak", "bacterial_panicle_blight", "blast", "brown_spot",
    "dead_heart", "downy_mildew", "hispa", "normal", "tungro",
]  # fmt: skip
RICE5_FOLDERS = ["Blast", "Blight", "Brownspot", "Sheath_blight", "Tungro"]  # ../shared/data/rice5, as named there


def test_every_class_of_paddy_doctor_and_rice5_and_healthy_has_a_card():
    cards = load_cards()
    assert set(PADDY_DOCTOR) | {"sheath_blight", "healthy"} <= set(cards)
    matched = match_cards(RICE5_FOLDERS)
    assert {name: card.key for name, card in matched.items()} == {
        "Blast": "blast",
        "Blight": "bacterial_leaf_blight",
        "Brownspot": "brown_spot",
        "Sheath_blight": "sheath_blight",
        "Tungro": "tungro",
    }


@pytest.mark.parametrize(
    ("name", "key"),
    [("Bacterialblight", "bacterial_leaf_blight"), ("Leaf Blast", "blast"), ("brown-spot", "brown_spot"),
     ("DEADHEART", "dead_heart"), ("rice_hispa", "hispa"), ("BLB", "bacterial_leaf_blight")],
)  # fmt: skip
def test_classes_match_cards_by_alias_ignoring_case_spaces_hyphens_and_underscores(name, key):
    assert match_cards([name])[name].key == key
    assert normalise(name) == normalise(name.upper().replace("_", " "))


def test_an_unknown_class_has_no_card():
    assert match_cards(["rust", "weeds"]) == {}


def test_no_alias_names_two_cards():
    seen: dict[str, str] = {}
    for card in load_cards().values():
        for name in {normalise(n) for n in (card.key, *card.aliases)}:
            assert seen.setdefault(name, card.key) == card.key, name


@pytest.mark.parametrize("key", sorted(json.loads(CARDS_FILE.read_text(encoding="utf-8"))["cards"]))
def test_each_card_is_complete_in_both_languages_and_cites_a_source(key):
    card = load_cards()[key]
    assert card.sources and all(urlparse(s.url).scheme in ("http", "https") and s.title for s in card.sources)
    assert set(LANGUAGES) <= set(card.text)
    for language in LANGUAGES:
        text = card.text[language]
        assert text.name and text.call_extension, language
        assert 2 <= len(text.signs) <= 3 and 2 <= len(text.act_now) <= 4, (key, language)
        assert all(line.strip() for line in (*text.signs, *text.act_now)), (key, language)
    assert bool(card.text["en"].chemical) == bool(card.text["vi"].chemical)  # named in both or in neither


def test_vietnamese_cards_use_the_plant_protection_names_and_keep_the_regional_synonyms():
    cards = load_cards()
    blight = cards["bacterial_leaf_blight"].text["vi"]
    assert blight.name == "Bệnh bạc lá" and "bệnh cháy bìa lá" in blight.synonyms  # north / south
    assert cards["blast"].text["vi"].name == "Bệnh đạo ôn" and cards["sheath_blight"].text["vi"].name == "Bệnh khô vằn"
