"""Text previews for the report that are safe to show without a PII model.

A masked preview keeps the shape of a text (why was it rejected? what do the
duplicates look like?) and blanks anything that could identify someone:

- a word written in lower case is shown only if it is one of the ~18k common
  English words in ``common_words.txt`` (wordfreq's top 20k less every first
  and last name faker knows, see build_common_words.py);
- a capitalised word (names, places, organisations) only if it is one of the
  400 most common of those words (so "The", "Patient" and "Please" stay,
  "Boston" and "Smith" go);
- every digit becomes ``#``; e-mail addresses and URLs (also "jdoe at gmail
  dot com") are blanked whole; everything else (punctuation, spacing) stays.

Blanked words become ``▒▒`` whatever their length. Nothing is loaded but a
144 kB word list, so a report costs milliseconds, not the seconds a spaCy +
Presidio engine takes to load. ``report: {previews: scrubbed}`` runs the
run's PII profile over previews instead (more readable, more costly, as
exact as the scrubber), ``hidden`` shows none.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

BLANK = "▒▒"
_WORD = re.compile(r"[^\W\d_]+|\d")
# whole addresses go first: their domains are often common words ("gmail", "example")
_ADDRESS = re.compile(
    r"\S+@\S+|(?:https?|ftp)://\S+|www\.\S+|\b[\w.+-]+ (?:at|AT) [\w-]+(?: (?:dot|DOT) \w+)+", re.ASCII
)
_CAPITALISED_KEPT = 400


@functools.lru_cache(maxsize=1)
def _words() -> tuple[frozenset[str], frozenset[str]]:
    """(all common words, the most common ones a capitalised word may be)."""
    words = (Path(__file__).resolve().parent / "common_words.txt").read_text(encoding="utf-8").split()
    return frozenset(words), frozenset(words[:_CAPITALISED_KEPT])  # the file is most frequent first


def mask(text: str) -> str:
    """``text`` with names, places, numbers and rare words blanked (see the module docstring)."""
    common, top = _words()

    def one(m: re.Match[str]) -> str:
        w = m.group()
        if w.isdigit():
            return "#"
        low = w.lower()
        if w == low:
            return w if low in common else BLANK
        return w if low in top else BLANK

    return _WORD.sub(one, _ADDRESS.sub(BLANK, text))
