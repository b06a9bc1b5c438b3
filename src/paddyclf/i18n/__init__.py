"""The web app's languages: gettext catalogues (Babel), the visitor's language, numbers and dates in it.

Catalogues are ``locale/<language>/LC_MESSAGES/messages.po``, extracted by ``make messages``
(``pybabel extract`` over the templates, ``serve/*.py`` and ``static/app.js``) and read at run time:
no compiled ``.mo`` file to keep in step. English is the source language; adding a language is
adding one ``.po`` file (README, "Languages").
"""

from __future__ import annotations

import io
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.core import negotiate_locale
from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_percent
from babel.support import NullTranslations, Translations

LOCALE_DIR = Path(__file__).parent / "locale"
SOURCE_LANGUAGE = "en"
SCRIPT_SOURCE = "serve/static/"  # the messages of the page scripts also go to the browser, as JSON


@lru_cache(maxsize=1)
def languages() -> tuple[str, ...]:
    """English, then every language with a catalogue, sorted: ``("en", "vi")``."""
    found = sorted(p.parent.parent.name for p in LOCALE_DIR.glob("*/LC_MESSAGES/messages.po"))
    return (SOURCE_LANGUAGE, *found)


def native_name(language: str) -> str:
    """The language's name in itself, as a switcher shows it: "Tiếng Việt", "English"."""
    try:
        name = Locale.parse(language).get_display_name(language) or language
    except (ValueError, UnknownLocaleError):
        return language
    return name[:1].upper() + name[1:]


def parse_accept_language(header: str | None) -> list[str]:
    """``Accept-Language`` -> language tags, most wanted first (q=0 dropped; stable for equal q)."""
    weighted = []
    for position, part in enumerate((header or "").split(",")):
        tag, *params = part.strip().split(";")
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:  # a malformed weight counts as "not wanted"
                    quality = 0.0
        if tag and tag != "*" and quality > 0:
            weighted.append((-quality, position, tag.strip()))
    return [tag for _, _, tag in sorted(weighted)]


def negotiate(accept_language: str | None, chosen: str | None = None) -> str:
    """The page's language: the one the visitor chose (switcher, cookie) if there is a catalogue,
    else the best match of ``Accept-Language`` ("vi-VN" -> "vi"), else English."""
    available = {code.lower(): code for code in languages()}  # tags are case-insensitive (RFC 5646)
    if chosen and chosen.lower() in available:
        return available[chosen.lower()]
    preferred = [tag.replace("_", "-").lower() for tag in parse_accept_language(accept_language)]
    # negotiate_locale matches "vi-VN" to "vi" only through its aliases; match the primary subtag too
    preferred += [tag.split("-")[0] for tag in preferred]
    found = negotiate_locale(preferred, list(available), sep="-")
    return available.get((found or "").lower(), SOURCE_LANGUAGE)


@lru_cache(maxsize=16)  # a few languages; the key is always a negotiated one
def _catalog(language: str):
    """The parsed ``messages.po`` of ``language`` (read once per process), or None without one."""
    if language == SOURCE_LANGUAGE or language not in languages():
        return None
    with (LOCALE_DIR / language / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        return read_po(fh, locale=language)


@lru_cache(maxsize=16)
def translations(language: str) -> NullTranslations:
    """gettext translations for ``language`` (identity for English), compiled in memory from its ``.po``."""
    catalog = _catalog(language)
    if catalog is None:
        return NullTranslations()
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled)


@lru_cache(maxsize=16)
def script_messages(language: str) -> dict[str, str]:
    """The translations of ``static/app.js``'s messages, ``{English: translated}``, for the browser."""
    catalog = _catalog(language)
    return {
        m.id: m.string
        for m in catalog or ()
        if m.id and m.string and isinstance(m.id, str) and any(SCRIPT_SOURCE in path for path, _ in m.locations)
    }


def N_(message: str) -> str:  # noqa: N802 - gettext's conventional marker: extracted, translated later
    return message


OVER = N_("over %(percent)s")  # a probability past what 0.1% steps can show
UNDER = N_("under %(percent)s")


def percent(probability: float, language: str) -> str:
    """A probability as people read it, to 0.1%, in the language's number format ("96.6%", "96,6%").

    Never "100.0%" (or "0.0%"), which no model should claim: "over 99.9%", "under 0.1%".
    """
    _ = translations(language).gettext
    if probability >= 0.9995:
        return _(OVER) % {"percent": format_percent(0.999, "#,##0.0%", locale=language)}
    if 0 < probability < 0.0005:
        return _(UNDER) % {"percent": format_percent(0.001, "#,##0.0%", locale=language)}
    return format_percent(probability, "#,##0.0%", locale=language)


def date_time(moment: datetime, language: str) -> str:
    """A stored UTC time, short, in the language's format ("12/3/26, 11:03 AM", "11:03 3/12/26")."""
    return format_datetime(moment, "short", locale=language)
