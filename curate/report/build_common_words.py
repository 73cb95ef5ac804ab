"""Build common_words.txt: the words a masked report preview may show.

    python -m curate.report.build_common_words   (needs the dev extra: wordfreq, faker)

The 20,000 most frequent English words (wordfreq), letters only, less every
first and last name faker knows in 12 locales ("will", "may", "mark", "white"
go too, except that the 500 most frequent words stay unless they are English
first names: "my", "good", "said" are names somewhere; a preview loses a
little readability rather than show a name), most
frequent first (previews.py lets a capitalised word through only from the top).
Everything else in a masked preview (names, places, rare words, numbers) is
blanked; see curate/report/previews.py.
"""

from __future__ import annotations

import importlib
from pathlib import Path

OUT = Path(__file__).resolve().parent / "common_words.txt"
LOCALES = ["en_US", "en_GB", "en_IN", "de_DE", "fr_FR", "es_ES", "es_MX", "it_IT", "nl_NL", "pt_BR", "pl_PL", "sv_SE"]


def names(locales: list[str] = LOCALES, last: bool = True) -> set[str]:
    out: set[str] = set()
    for loc in locales:
        provider = importlib.import_module(f"faker.providers.person.{loc}").Provider
        for attr in ("first_names", "first_names_male", "first_names_female") + (("last_names",) if last else ()):
            values = getattr(provider, attr, ())
            out.update(v.lower() for v in (values.keys() if isinstance(values, dict) else values))
    return out


def build() -> list[str]:
    from wordfreq import top_n_list

    blocked, english_first = names(), names(["en_US", "en_GB"], last=False)
    seen: set[str] = set()
    out = []
    for rank, w in enumerate(top_n_list("en", 20_000)):
        if not w.isalpha() or w in seen:
            continue
        seen.add(w)
        # the 500 most frequent words stay unless they are English first names ("john", "james"):
        # "my", "more", "good", "said", "day" are names somewhere, but blanking them reads badly
        if w not in blocked or (rank < 500 and w not in english_first):
            out.append(w)
    return out


if __name__ == "__main__":
    words = build()
    OUT.write_text("\n".join(words) + "\n", encoding="utf-8")
    print(f"wrote {len(words)} words to {OUT}")
