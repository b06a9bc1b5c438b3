"""The web app in Vietnamese and English: complete catalogues, the visitor's language, locale formats."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from babel.messages.frontend import CommandLineInterface
from babel.messages.pofile import read_po
from fastapi.testclient import TestClient
from serve_helpers import upload

from paddyclf import i18n
from paddyclf.i18n import LOCALE_DIR, negotiate, parse_accept_language, percent
from paddyclf.serve.app import LANGUAGE_COOKIE, create_app
from paddyclf.serve.config import ServeConfig

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "expert-token-123"


def catalogue(language: str):
    with (LOCALE_DIR / language / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        return read_po(fh, locale=language)


def english_ids(catalog) -> set:
    return {m.id if isinstance(m.id, str) else tuple(m.id) for m in catalog if m.id}


class VisibleText(HTMLParser):
    """The text a visitor reads: element text and the attributes a screen shows (placeholder, alt)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        self._hidden += tag in ("script", "style")
        self.parts += [v for k, v in attrs if k in ("placeholder", "alt", "aria-label") and v]

    def handle_endtag(self, tag):
        self._hidden -= tag in ("script", "style")

    def handle_data(self, data):
        if not self._hidden:
            self.parts.append(data)

    @classmethod
    def of(cls, html: str) -> str:
        parser = cls()
        parser.feed(html)
        return re.sub(r"\s+", " ", " ".join(parser.parts))


@pytest.fixture()
def client(served_checkpoint, tmp_path):
    config = ServeConfig(model=str(served_checkpoint), data_dir=str(tmp_path / "data"), review_token=TOKEN)
    with TestClient(create_app(config)) as client:
        yield client


# --------------------------------------------------------------------------- catalogues


def test_every_message_has_a_vietnamese_translation_with_the_same_placeholders():
    catalog = catalogue("vi")
    untranslated = [
        m.id for m in catalog if m.id and (m.fuzzy or not all(m.string if isinstance(m.string, tuple) else [m.string]))
    ]
    assert untranslated == []
    problems = [(m.id, [str(e) for e in errors]) for m, errors in catalog.check()]
    assert problems == []  # python-format: the same %(name)s in both languages


def test_the_catalogue_holds_every_string_of_the_pages_the_server_and_the_script(tmp_path):
    """Run `make messages`' extraction afresh: a new or changed English string fails until translated."""
    pot = tmp_path / "messages.pot"
    args = ["pybabel", "-q", "extract", "-F", str(ROOT / "babel.cfg"), "-k", "N_", "-o", str(pot), "."]
    cwd = Path.cwd()
    try:
        import os

        os.chdir(ROOT)
        CommandLineInterface().run(args)
    finally:
        os.chdir(cwd)
    with pot.open("rb") as fh:
        extracted = english_ids(read_po(fh))
    assert len(extracted) > 50
    assert extracted == english_ids(catalogue("vi")), "run `make messages` and translate the new entries"


def test_the_script_gets_exactly_its_own_messages():
    messages = i18n.script_messages("vi")
    assert messages["Show the photo"] == "Xem ảnh gốc" and "Diagnosing %(name)s …" in messages
    assert "Diagnose a rice leaf" not in messages  # a page string, not the script's
    assert i18n.script_messages("en") == {}


# --------------------------------------------------------------------------- the visitor's language


@pytest.mark.parametrize(
    ("header", "language"),
    [
        ("vi-VN,vi;q=0.9,en-US;q=0.8", "vi"),
        ("en-US,en;q=0.9,vi;q=0.8", "en"),
        ("fr-FR, vi;q=0.5", "vi"),
        ("vi;q=0, en;q=0.1", "en"),
        ("*", "en"),
        ("", "en"),
        (None, "en"),
        ("vi;q=abc, ;;, en-GB", "en"),  # a malformed weight counts as 0
        ("VI-vn", "vi"),  # tags are case-insensitive
        ("Vi", "vi"),
    ],
)
def test_the_language_is_the_best_match_of_accept_language(header, language):
    assert negotiate(header) == language


def test_a_chosen_language_wins_over_accept_language_unless_it_has_no_catalogue():
    assert negotiate("vi", chosen="en") == "en" and negotiate("en", chosen="vi") == "vi"
    assert negotiate("vi", chosen="xx") == "vi" and negotiate("en", chosen="VI") == "vi"
    assert parse_accept_language("en;q=0.5, vi, de;q=0.7") == ["vi", "de", "en"]


def test_numbers_and_dates_follow_the_language():
    assert (percent(0.9662, "en"), percent(0.9662, "vi")) == ("96.6%", "96,6%")
    assert (percent(0.99996, "vi"), percent(0.0001, "vi")) == ("trên 99,9%", "dưới 0,1%")
    from datetime import datetime, timezone

    moment = datetime(2026, 12, 3, 14, 5, tzinfo=timezone.utc)
    assert i18n.date_time(moment, "vi") != i18n.date_time(moment, "en")
    assert "3/12" in i18n.date_time(moment, "vi") and "12/3" in i18n.date_time(moment, "en")


def test_the_page_follows_accept_language_and_remembers_the_switcher(client):
    vi = client.get("/", headers={"accept-language": "vi-VN,vi;q=0.9"})
    assert '<html lang="vi" ' in vi.text and "Chẩn đoán bệnh trên lá lúa" in vi.text
    assert "accept-language" in vi.headers["vary"].lower()
    switched = client.get("/?lang=en", headers={"accept-language": "vi"})
    assert '<html lang="en" ' in switched.text and switched.cookies.get(LANGUAGE_COOKIE) == "en"
    remembered = client.get("/history", headers={"accept-language": "vi"})  # the cookie is sent back
    assert '<html lang="en" ' in remembered.text
    links = re.findall(r'<a href="([^"]+)" hreflang="(\w+)"', client.get("/history?status=ok").text)
    assert links == [("/history?status=ok&amp;lang=vi", "vi")]


def test_a_vietnamese_page_shows_no_english_ui_string(client, tiny_data):
    leaf = sorted((tiny_data / "images" / "blast").glob("*.jpg"))[0]
    reply = client.post("/", files=[upload(leaf.name, leaf.read_bytes())], headers={"accept-language": "vi"})
    assert reply.status_code == 200
    record = client.get("/api/v1/diagnoses").json()["items"][0]
    client.post(
        f"/api/v1/diagnoses/{record['id']}/review",
        json={"label": "blast"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    pages = {
        "diagnose": VisibleText.of(reply.text),
        "history": VisibleText.of(client.get("/history", headers={"accept-language": "vi"}).text),
    }
    translated = [m for m in catalogue("vi") if m.id and m.id != m.string]
    for name, text in pages.items():
        assert "Lịch sử" in text and "Bệnh đạo ôn" in text, name  # the class name in Vietnamese
        for message in translated:
            english = message.id if isinstance(message.id, str) else message.id[0]
            for fragment in re.split(r"%\(\w+\)s", english):
                if len(re.findall(r"[A-Za-z]{2,}", fragment)) >= 2:  # a phrase, not a lone word or a symbol
                    assert fragment.strip() not in text, (name, fragment)
    assert "chuyên gia xác nhận: Bệnh đạo ôn" in pages["history"]


def test_the_api_speaks_the_accept_language_with_the_card_in_it(client, tiny_data):
    leaf = sorted((tiny_data / "images" / "blast").glob("*.jpg"))[0]
    reply = client.post(
        "/api/v1/diagnose", files=[upload(leaf.name, leaf.read_bytes())], headers={"accept-language": "vi"}
    )
    (result,) = reply.json()["results"]
    assert result["language"] == "vi" and result["verdict"]["badge"] in (
        "kết luận",
        "chưa chắc chắn",
        "khác ảnh huấn luyện",
    )
    assert {t["label"]: t["name"] for t in result["top_k"]}["blast"] == "Bệnh đạo ôn"
    english = client.get(f"/api/v1/diagnoses/{result['id']}").json()
    assert english["language"] == "en" and {t["label"]: t["name"] for t in english["top_k"]}["blast"] == "Blast"


def test_a_card_that_names_a_pesticide_always_says_to_follow_the_label():
    from paddyclf.serve.app import templates
    from paddyclf.serve.wording import Wording

    wording = Wording(["blast", "tungro"])
    for language, warning in (("en", "Follow the label and local rules."), ("vi", "Tuân thủ hướng dẫn")):
        card = wording.card("blast", language)
        assert card["chemical"] and card["label_warning"].startswith(warning)
        html = str(templates(language).get_template("_card.html").module.knowledge_card(card))
        assert f"<strong>{card['label_warning']}</strong>" in html and card["sources"][0]["url"] in html
    assert wording.card("tungro", "en")["chemical"] == "" == wording.card("tungro", "en")["label_warning"]
