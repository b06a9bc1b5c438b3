"""How a diagnosis reads, in the visitor's language: the verdict in words, photo tips, class names, the card.

English is the source text; every string here is marked with ``N_`` for ``make messages`` and
translated when a record is described (:mod:`paddyclf.i18n`). Class names and the disease cards
come from :mod:`paddyclf.knowledge`; an operator's ``--class-info`` text replaces a class's card
(or adds one for a class that has none) and is shown as written.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..i18n import N_, OVER, UNDER, percent, translations
from ..knowledge import Card, class_name, match_cards
from ..trust import OK, OUT_OF_DISTRIBUTION, UNSURE


@dataclass(frozen=True)
class VerdictText:
    """How a verdict reads on the page: a badge, a headline, what it means, and tips for a better photo."""

    badge: str
    headline: str
    detail: str
    tips: tuple[str, ...]


PHOTO_TIPS = (
    N_("Photograph one leaf so that it fills the frame, with the spots or stripes in view."),
    N_("Take it in daylight, in the shade, without flash."),
    N_("Hold still so that the photo is sharp: tap the leaf on the screen to focus."),
)
VERDICT_TEXT = {
    OK: VerdictText(N_("answer"), N_("Most likely %(label)s (%(percent)s)."), "", ()),
    UNSURE: VerdictText(
        N_("not sure"),
        N_("Not sure."),
        N_("The model cannot tell which disease this is; the classes below are guesses, not an answer."),
        PHOTO_TIPS,
    ),
    OUT_OF_DISTRIBUTION: VerdictText(
        N_("unlike the training photos"),
        N_("This photo is unlike the photos the model learned from."),
        N_(
            "It may be another plant, a whole field, or a dark or blurred photo; it may also be a rice leaf "
            "from a field unlike the training photos. Any answer would be a guess."
        ),
        PHOTO_TIPS,
    ),
}
LABEL_WARNING = N_("Follow the label and local rules.")
STATUS_NAMES = {OK: N_("answer"), UNSURE: N_("not sure"), OUT_OF_DISTRIBUTION: N_("unlike the training photos")}


class Wording:
    """The words of a model's diagnoses: its classes matched to cards, and an optional ``--class-info``."""

    def __init__(self, classes: list[str], class_info: dict[str, list[tuple[str, str]]] | None = None) -> None:
        self.class_info = class_info or {}
        self.named: dict[str, Card] = match_cards(classes)  # names in every language, --class-info or not
        self.cards: dict[str, Card] = {c: card for c, card in self.named.items() if c not in self.class_info}
        self._for_browser: dict[tuple[str, int], dict] = {}

    def class_name(self, label: str, language: str) -> str:
        return class_name(label, language, self.named)

    def status_name(self, status: str, language: str) -> str:
        return translations(language).gettext(STATUS_NAMES.get(status, status))

    def verdict(self, status: str, label: str, probability: float, language: str) -> dict:
        _ = translations(language).gettext
        text = VERDICT_TEXT.get(status, VERDICT_TEXT[UNSURE])
        name = self.class_name(label, language)
        return {
            "status": status,
            "badge": _(text.badge),
            "headline": _(text.headline) % {"label": name, "percent": percent(probability, language)},
            "detail": _(text.detail) if text.detail else "",
            "tips": [_(tip) for tip in text.tips],
        }

    def card(self, label: str, language: str) -> dict | None:
        """The disease card of ``label`` in ``language`` (as the API and the page show it), or None."""
        card = self.cards.get(label)
        if card is None:
            return None
        text = card.in_language(language)
        return {
            "class": card.key,
            "language": language if language in card.text else "en",
            "name": text.name,
            "synonyms": list(text.synonyms),
            "signs": list(text.signs),
            "act_now": list(text.act_now),
            "chemical": text.chemical,
            "label_warning": translations(language).gettext(LABEL_WARNING) if text.chemical else "",
            "call_extension": text.call_extension,
            "sources": [{"title": s.title, "url": s.url} for s in card.sources],
        }

    def for_browser(self, language: str, top_k: int) -> dict:
        """The words a page needs to draw a diagnosis made in the browser, in ``language`` (the page
        embeds them, so they are there offline): verdict texts with their ``%(label)s`` and ``%(percent)s``
        left to fill, every class's name, every answer's card and ``--class-info`` text. Built once per
        language: every page carries them."""
        key = (language, top_k)
        if key not in self._for_browser:
            self._for_browser[key] = self._browser_words(language, top_k)
        return self._for_browser[key]

    def _browser_words(self, language: str, top_k: int) -> dict:
        _ = translations(language).gettext
        labels = sorted(self.named.keys() | self.class_info.keys())
        return {
            "language": language,
            "top_k": top_k,
            "verdicts": {
                status: {
                    "badge": _(text.badge),
                    "headline": _(text.headline),
                    "detail": _(text.detail) if text.detail else "",
                    "tips": [_(tip) for tip in text.tips],
                }
                for status, text in VERDICT_TEXT.items()
            },
            "over": _(OVER),
            "under": _(UNDER),
            "class_names": {label: self.class_name(label, language) for label in labels},
            "cards": {label: self.card(label, language) for label in self.cards},
            "class_info": {
                label: [{"heading": h, "text": t} for h, t in items] for label, items in self.class_info.items()
            },
        }

    def describe(self, record: dict, language: str) -> dict:
        """The words of a stored record: verdict, class names in ``language``, and the card of an answer."""
        status, best = record["status"], record["top_k"][0]
        answered = status == OK
        return {
            "verdict": self.verdict(status, best["label"], best["probability"], language),
            "top_k": [t | {"name": self.class_name(t["label"], language)} for t in record["top_k"]],
            "class_info": [{"heading": h, "text": t} for h, t in self.class_info.get(best["label"], [])]
            if answered
            else [],
            "card": self.card(best["label"], language) if answered else None,
            "reviewed_name": self.class_name(record["reviewed_label"], language)
            if record.get("reviewed_label")
            else None,
            "language": language,
        }
