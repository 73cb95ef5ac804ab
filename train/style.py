"""The style goal, measured on what the model writes: gendered terms in its generations, and a
counterfactual check (the same prompt with gendered words swapped should get the same answer).

The counter is the rewrite engine itself: every edit the gender-neutral lexicon (and, with
``pronouns``, the generic-he/she rule) would make in a generation is one gendered term. So the
measure and the curation agree on what "gendered" means, and a lexicon of your own measures your
own style.

The counterfactual check is the "identical resumes under different names" audit turned on the
model: each held-out prompt that holds a gendered word is also asked with every gendered word
swapped (he <-> she, chairman <-> chairwoman, actress <-> actor, and first names of one gender
for the other). ``identical``: share of pairs whose two answers are the same text (a
gender-neutral rewriter writes "chairperson" and "they" for both). ``consistent``: same, after
the swap is applied to the first answer (the model may keep gender, but treats both alike).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_PAIRS = {
    "he": "she", "him": "her", "his": "her", "himself": "herself", "man": "woman", "men": "women",
    "boy": "girl", "boys": "girls", "father": "mother", "brother": "sister", "son": "daughter",
    "husband": "wife", "king": "queen", "mr": "ms", "sir": "madam", "gentleman": "lady", "gentlemen": "ladies",
    "male": "female", "masculine": "feminine", "boyfriend": "girlfriend", "uncle": "aunt", "nephew": "niece",
    "actor": "actress", "waiter": "waitress", "steward": "stewardess", "host": "hostess", "heir": "heiress",
    "hero": "heroine", "headmaster": "headmistress", "prince": "princess", "duke": "duchess", "landlord": "landlady",
    "god": "goddess", "emperor": "empress", "manager": "manageress", "usher": "usherette",
}  # fmt: skip
# "her" is "his" before a noun phrase and "him" otherwise: the next word decides
_HER_OBJECT_NEXT = re.compile(r"^(?:[.,;:!?)]|and\b|or\b|to\b|for\b|with\b|at\b|in\b|on\b|about\b|$)", re.I)


class StyleEval(BaseModel):
    """Measure a style in generations for held-out prompts, before and after training."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    lexicons: list[str] = ["gender_neutral"]
    """The lexicons whose matches count as off-style terms (names or CSV paths, as in rewrite.lexicon)."""
    pronouns: bool = True
    """Count generic he/she (a pronoun referring to an unnamed role) too."""
    counterfactual: bool = True
    """Also ask each prompt with its gendered words swapped and compare the answers."""
    max_prompts: int = Field(default=32, ge=1)
    max_new_tokens: int = Field(default=128, ge=1)
    spacy_model: str | None = None
    """spaCy pipeline for the counter (default: the rewrite stage's)."""


@lru_cache(maxsize=4)
def swap_map(lexicons: tuple[str, ...]) -> dict[str, str]:
    """Masculine <-> feminine word pairs: fixed pairs (he/she, actor/actress, ...), the lexicons'
    -man/-woman forms that share a neutral replacement, and first names of one gender for the other."""
    from curate.rewrite.lexicon import load_lexicon

    entries = [e for name in lexicons for e in load_lexicon(name).entries]
    sources = {e.source.lower(): e.replacement.lower() for e in entries}
    pairs = dict(_PAIRS)
    for src in list(sources):
        fem = None
        if src.endswith("man") and not src.endswith("woman"):
            fem = src[:-3] + "woman"
        if fem and sources.get(fem) == sources[src] and src not in pairs:
            pairs[src] = fem
            pairs[src[:-3] + "men"] = fem[:-5] + "women"
    for m, f in _first_name_pairs():
        pairs.setdefault(m, f)
    return pairs


@lru_cache(maxsize=1)
def _first_name_pairs() -> list[tuple[str, str]]:
    """Faker's en_US male and female first names, paired by popularity rank."""
    from faker.providers.person.en_US import Provider

    male = [n.lower() for n in Provider.first_names_male if " " not in n]
    female = [n.lower() for n in Provider.first_names_female if " " not in n]
    common = set(male) & set(female)
    return [(m, f) for m, f in zip(male, female) if m not in common and f not in common]


def gender_swap(text: str, lexicons: tuple[str, ...] = ("gender_neutral",)) -> str:
    """``text`` with every gendered word swapped for its counterpart (case kept)."""
    from curate.rewrite.engine import _match_case

    pairs = swap_map(lexicons)
    both = {**pairs, **{f: m for m, f in pairs.items() if f != "her"}}

    def one(m: re.Match) -> str:
        word = m.group(0)
        low = word.lower()
        if low == "her":
            rest = text[m.end() :].lstrip()
            return _match_case(word, "him" if _HER_OBJECT_NEXT.match(rest) else "his")
        return _match_case(word, both[low]) if low in both else word

    return re.sub(r"[A-Za-z]+", one, text)


def prompt_contexts(df: Any, fmt: str) -> list[list[dict[str, str]]]:
    """Each held-out record's prompt as chat messages (the assistant's answer left out)."""
    from train.data import chat_messages, instruction_text

    if fmt == "chat":
        out = []
        for raw in df["messages"].to_list():
            msgs = chat_messages(raw)
            out.append(msgs[:-1] if msgs and msgs[-1]["role"] == "assistant" else msgs)
        return out
    if fmt == "instruction":
        inputs = df["input"].to_list() if "input" in df.columns else [""] * len(df)
        texts = [instruction_text(ins, inp) for ins, inp in zip(df["instruction"].to_list(), inputs)]
    else:  # completion and preference records have a prompt
        texts = df["prompt"].to_list()
    return [[{"role": "user", "content": t}] for t in texts]


def style_eval(
    model: Any, tokenizer: Any, contexts: list[list[dict[str, str]]], render: Any, spec: StyleEval,
    batch_size: int = 16,
) -> dict[str, Any] | None:  # fmt: skip
    """Generations for held-out prompts (``contexts``: chat messages; ``render`` makes the model's
    prompt text from them): gendered terms per 100 words, the share of answers with any, and the
    counterfactual agreement."""
    if not contexts:
        return None
    from curate.rewrite.engine import DEFAULT_SPACY_MODEL, build_rewriter
    from train.data import generate

    contexts = contexts[: spec.max_prompts]
    prompts = ["\n\n".join(m["content"] for m in c if m["role"] == "user") for c in contexts]
    rewriter = build_rewriter(tuple(spec.lexicons), spec.pronouns, spec.spacy_model or DEFAULT_SPACY_MODEL)
    gens = generate(model, tokenizer, [render(c) for c in contexts], spec.max_new_tokens, batch_size)
    found = [rewriter.rewrite(g)[1] for g in gens]
    words = sum(len(g.split()) for g in gens)
    prompt_terms = sum(len(e) for _, e in rewriter.rewrite_many(prompts))
    prompt_words = sum(len(p.split()) for p in prompts)
    out: dict[str, Any] = {
        "generations": len(gens),
        "gendered_per_100_words": round(100 * sum(len(f) for f in found) / max(words, 1), 3),
        "with_gendered_terms": round(sum(bool(f) for f in found) / len(gens), 4),
        "prompts_gendered_per_100_words": round(100 * prompt_terms / max(prompt_words, 1), 3),
        "mean_words": round(words / len(gens), 1),
        "samples": [
            {"prompt": p[:300], "generated": g[:300], "gendered_terms": [e.old for e in f][:8]}
            for p, g, f in list(zip(prompts, gens, found))[:3]
        ],
    }
    if spec.counterfactual:
        lex = tuple(spec.lexicons)
        swapped = [(i, [{**m, "content": gender_swap(m["content"], lex)} for m in c]) for i, c in enumerate(contexts)]
        swapped = [(i, s) for i, s in swapped if s != contexts[i]]
        if swapped:
            other = generate(model, tokenizer, [render(s) for _, s in swapped], spec.max_new_tokens, batch_size)
            first = [gens[i] for i, _ in swapped]
            same = [a.strip() == b.strip() for a, b in zip(first, other)]
            alike = [s or gender_swap(a, lex).strip() == b.strip() for s, a, b in zip(same, first, other)]
            out["counterfactual"] = {
                "pairs": len(swapped),
                "identical": round(sum(same) / len(same), 4),
                "consistent": round(sum(alike) / len(alike), 4),
                "samples": [
                    {
                        "prompt": swapped[k][1][-1]["content"][:300],
                        "generated": other[k][:300],
                        "original_answer": first[k][:300],
                    }
                    for k in range(min(2, len(swapped)))
                    if not same[k]
                ],
            }
    return out
