"""Synthetic corpora written by this project: the demo's data_samples/ and benchmark corpora.

Every word list and template here was written for this project; no text is
copied from elsewhere. All identifiers (names, record numbers, phones,
emails, addresses) are invented and generated from a seeded RNG, so the same
seed always gives the same bytes.

    python -m curate.synth samples data_samples/          # the demo corpora
    python -m curate.synth corpus out.jsonl --docs 100000 # a benchmark corpus
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import random
from pathlib import Path

FIRST = (
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara Richard Susan Joseph "
    "Jessica Thomas Sarah Charles Karen Daniel Nancy Matthew Lisa Anthony Betty Mark Sandra Donald Ashley Steven "
    "Kimberly Andrew Emily Paul Donna Joshua Michelle Kenneth Carol Kevin Amanda Brian Melissa George Deborah "
    "Aisha Wei Priya Mateo Sofia Hiroshi Amara Lars Ingrid Omar Fatima Diego Lucia Kofi Mei Ravi Elena Tomasz"
).split()
LAST = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez Wilson "
    "Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark Ramirez Lewis "
    "Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera "
    "Okafor Tanaka Kowalski Lindqvist Haddad Moreau Rossi Schmidt Novak Petrov Chen Patel Osei Fernandes"
).split()
STREETS = (
    "Oak Maple Cedar Pine Elm Walnut Birch Willow Chestnut Spruce Hawthorn Juniper Laurel Magnolia Sycamore".split()
)
STREET_KINDS = ["Street", "Avenue", "Road", "Lane", "Drive", "Court", "Boulevard", "Way"]
CITIES = [
    ("Springfield", "IL", "627"),
    ("Riverton", "WY", "825"),
    ("Fairview", "OR", "970"),
    ("Madison", "WI", "537"),
    ("Georgetown", "TX", "786"),
    ("Clinton", "IA", "527"),
    ("Salem", "MA", "019"),
    ("Franklin", "TN", "370"),
    ("Greenville", "SC", "296"),
    ("Bristol", "CT", "060"),
    ("Arlington", "VA", "222"),
    ("Dover", "DE", "199"),
]
HOSPITALS = [
    "St. Brigid Medical Center",
    "Lakeside General Hospital",
    "Northfield Community Clinic",
    "Mercy Valley Hospital",
    "Harborview Family Practice",
    "Pine Ridge Regional Medical Center",
]
CONDITIONS = [
    "community-acquired pneumonia",
    "type 2 diabetes mellitus",
    "acute appendicitis",
    "atrial fibrillation",
    "congestive heart failure",
    "a closed fracture of the left radius",
    "cellulitis of the right leg",
    "an asthma exacerbation",
    "chronic kidney disease stage 3",
    "a urinary tract infection",
    "migraine without aura",
    "hypertension",
    "iron deficiency anaemia",
    "acute bronchitis",
]
MEDS = [
    "amoxicillin 500 mg three times daily",
    "metformin 1000 mg twice daily",
    "apixaban 5 mg twice daily",
    "furosemide 40 mg once daily",
    "lisinopril 10 mg once daily",
    "ibuprofen 400 mg as needed",
    "albuterol inhaler two puffs every four hours",
    "ferrous sulfate 325 mg daily",
    "cephalexin 500 mg four times daily",
]
FINDINGS = [
    "Vital signs were stable on arrival.",
    "The patient was afebrile and alert.",
    "Chest examination revealed crackles at the right base.",
    "Blood glucose was elevated at admission.",
    "An ECG showed an irregularly irregular rhythm.",
    "Swelling and redness were noted over the affected area.",
    "Laboratory results showed a mild leukocytosis.",
    "Oxygen saturation was 94 percent on room air.",
    "There was tenderness in the right lower quadrant.",
    "Renal function was reduced compared with last year.",
]
PLANS = [
    "Follow up in the outpatient clinic in two weeks.",
    "Repeat blood tests in one week.",
    "Return to the emergency department if symptoms worsen.",
    "Continue current medication and monitor at home.",
    "Referral to physiotherapy has been arranged.",
    "Dietary advice was given and a leaflet provided.",
]

PRODUCTS = [
    "router",
    "laptop",
    "mobile app",
    "smart thermostat",
    "printer",
    "subscription",
    "wireless headset",
    "tablet",
    "online account",
    "backup service",
    "security camera",
    "fitness tracker",
]
PROBLEMS = [
    "keeps disconnecting every few minutes",
    "will not turn on after the latest update",
    "charges my card twice each month",
    "shows an error when I try to log in",
    "is very slow since yesterday",
    "lost all my saved settings",
    "does not sync with my phone",
    "makes a loud clicking noise",
    "sends me emails I never asked for",
    "cannot find my order history",
]
# How urgent each problem is (the ticket's priority follows it, one level up when the customer
# writes for the third time): a triage rule a fine-tuned model can learn from the text.
SEVERITY = {
    "will not turn on after the latest update": 2, "charges my card twice each month": 2,
    "shows an error when I try to log in": 2, "lost all my saved settings": 2,
    "keeps disconnecting every few minutes": 1, "is very slow since yesterday": 1, "does not sync with my phone": 1,
    "makes a loud clicking noise": 1, "sends me emails I never asked for": 0, "cannot find my order history": 0,
}  # fmt: skip
PRIORITIES = ["low", "normal", "high"]
ASKS = [
    "Could you please look into this as soon as possible?",
    "I would like a refund if this cannot be fixed.",
    "Please call me back when you have an update.",
    "Is there a workaround I can use in the meantime?",
    "I have already tried restarting it twice.",
    "This is the third time I am contacting support about it.",
]

GENDERED_ROLES = [
    "chairman",
    "salesman",
    "fireman",
    "policeman",
    "mailman",
    "businessman",
    "stewardess",
    "foreman",
    "spokesman",
    "cameraman",
    "waitress",
    "headmaster",
    "workman",
    "craftsman",
    "congressman",
    "anchorman",
    "repairman",
    "deliveryman",
    "handyman",
    "actress",
]
JOB_DUTIES = [
    "review the quarterly reports",
    "train new staff",
    "meet with clients each week",
    "answer questions from the public",
    "keep the equipment in good order",
    "plan the monthly schedule",
    "write a short summary after each shift",
    "lead the safety briefing",
    "handle complaints politely",
]

# A small English grammar for benchmark corpora: varied enough that unrelated
# documents share few 5-grams, plain enough to read.
DET = "the a this that every each some one another".split()
ADJ = (
    "quick quiet large small early late bright dark careful simple complex local global recent ancient modern "
    "useful rare common heavy light warm cold narrow wide strong weak clear hidden public private formal"
).split()
NOUN = (
    "river city engineer report market teacher garden system signal village doctor machine letter storm "
    "library harbor student council bridge museum farmer kitchen network window forest island painter "
    "budget contract sensor orchard meadow festival journal workshop ledger canyon tower vessel lantern"
).split()
VERB = (
    "builds finds measures opens follows explains protects changes carries describes repairs notices "
    "collects studies visits designs tests records shares supports questions reaches crosses improves"
).split()
ADV = "slowly quickly carefully rarely often quietly openly almost nearly gently firmly clearly".split()
PREP = "near across under beside behind through toward within beyond along".split()


def _a(word: str) -> str:
    """'a' or 'an' before a word (by its first letter or digit sound)."""
    return ("an " if word[0].lower() in "aeio8" or word.startswith(("11", "18")) else "a ") + word


def _phone(rng: random.Random) -> str:
    a, b, c = rng.randint(201, 989), rng.randint(200, 999), rng.randint(0, 9999)
    return rng.choice([f"({a}) {b}-{c:04d}", f"{a}-{b}-{c:04d}", f"+1 {a} {b} {c:04d}", f"{a}.{b}.{c:04d}"])


def _email(rng: random.Random, first: str, last: str) -> str:
    domain = rng.choice(["example.com", "mailbox.test", "post.example.org", "inbox.example.net"])
    return rng.choice([f"{first}.{last}", f"{first[0]}{last}", f"{last}{rng.randint(1, 99)}"]).lower() + "@" + domain


def _date(rng: random.Random, lo: int = 1935, hi: int = 2024) -> tuple[int, int, int]:
    return rng.randint(lo, hi), rng.randint(1, 12), rng.randint(1, 28)


def clinical_note(rng: random.Random) -> str:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    city, state, zip3 = rng.choice(CITIES)
    by, bm, bd = _date(rng, 1930, 2005)
    ay, am, ad = _date(rng, 2021, 2024)
    mrn = rng.randint(1_000_000, 9_999_999)
    addr = f"{rng.randint(10, 9999)} {rng.choice(STREETS)} {rng.choice(STREET_KINDS)}, {city}, {state} {zip3}{rng.randint(0, 99):02d}"
    doctor = f"Dr. {rng.choice(FIRST)} {rng.choice(LAST)}"
    lines = [
        f"DISCHARGE SUMMARY - {rng.choice(HOSPITALS)}",
        f"Patient: {first} {last}    MRN: {mrn}    DOB: {bm:02d}/{bd:02d}/{by}",
        f"Address: {addr}    Phone: {_phone(rng)}",
        f"Admitted: {ay}-{am:02d}-{ad:02d}    Attending: {doctor}",
        "",
        f"{first} {last} is {_a(str(ay - by))}-year-old patient admitted with {rng.choice(CONDITIONS)}. "
        + " ".join(rng.sample(FINDINGS, 3)),
        f"Treatment was started with {rng.choice(MEDS)}. The patient improved over {rng.randint(2, 9)} days "
        f"and was discharged home in a stable condition.",
        "",
        "Plan: " + " ".join(rng.sample(PLANS, 2)),
    ]
    if rng.random() < 0.3:
        lines.append(
            f"Insurance member ID: {rng.choice('ABCDEFGH')}{rng.randint(10**8, 10**9 - 1)}. "
            f"SSN on file: {rng.randint(100, 665)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}."
        )
    return "\n".join(lines) + "\n"


def _priority(problem: str, asks: list[str], n: int, drawn: str) -> str:
    """The triage rule, with one ticket in ten labelled at random (agents disagree)."""
    if n % 10 == 0:
        return drawn
    level = SEVERITY[problem] + any("third time" in a for a in asks)
    return PRIORITIES[min(level, 2)]


def support_ticket(rng: random.Random, n: int) -> dict:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    product = rng.choice(PRODUCTS)
    problem, asks = rng.choice(PROBLEMS), rng.sample(ASKS, 2)
    body = (
        f"Hello, my name is {first} {last}. My {product} {problem}. "
        + " ".join(asks)
        + f" You can reach me at {_email(rng, first, last)} or {_phone(rng)}."
    )
    if rng.random() < 0.25:
        body += f" My order number is {rng.randint(100000, 999999)}."
    y, m, d = _date(rng, 2023, 2024)
    return {
        "ticket_id": f"T-{10000 + n}",
        "subject": f"{product.capitalize()} problem",
        "body": body,
        "priority": _priority(problem, asks, n, rng.choice(PRIORITIES)),
        "created": f"{y}-{m:02d}-{d:02d}",
    }


def job_post(rng: random.Random) -> str:
    role, other = rng.sample(GENDERED_ROLES, 2)
    pronoun, poss = rng.choice([("he", "his"), ("she", "her")])
    duties = rng.sample(JOB_DUTIES, 3)
    return (
        f"We are hiring {_a(role)} for our {rng.choice(CITIES)[0]} office. The {role} will {duties[0]} and "
        f"{duties[1]}. Each day {pronoun} reports to the {other} and must {duties[2]}. "
        f"A good {role} knows {poss} team well and keeps {poss} paperwork up to date."
    )


def sentence(rng: random.Random) -> str:
    s = (
        f"{rng.choice(DET)} {rng.choice(ADJ)} {rng.choice(NOUN)} {rng.choice(ADV)} {rng.choice(VERB)} "
        f"{rng.choice(DET)} {rng.choice(NOUN)} {rng.choice(PREP)} {rng.choice(DET)} {rng.choice(ADJ)} {rng.choice(NOUN)}"
    )
    return s[0].upper() + s[1:] + "."


def document(rng: random.Random, words: int) -> str:
    out, n = [], 0
    while n < words:
        s = sentence(rng)
        out.append(s)
        n += s.count(" ") + 1
    return " ".join(out)


def _mojibake(s: str) -> str:
    return s.encode("utf-8").decode("latin-1", errors="replace")


def web_page(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.1:
        return "Home | About | Contact | Privacy Policy | Terms of Use | © All rights reserved"
    if kind < 0.15:
        return "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * rng.randint(1, 4)
    if kind < 0.2:
        return rng.choice(["Click here!!!", "Subscribe now", "404 page not found", "ok"])
    text = document(rng, rng.randint(40, 180))
    if rng.random() < 0.15:
        text = text.replace(".", ". ", 3) + _mojibake(" The café’s menu — naïve but “fresh”.")
    if rng.random() < 0.1:
        text = "\u200b" + text.replace(" ", "  \t", 5) + "\x07\r\n\r\n\r\n\r\nRead more."
    return text


def near_duplicate(rng: random.Random, text: str) -> str:
    words = text.split(" ")
    for _ in range(max(1, len(words) // 40)):
        i = rng.randrange(len(words))
        words[i] = rng.choice(NOUN)
    return " ".join(words)


def write_samples(out: Path, seed: int = 7) -> dict[str, int]:
    """Write the demo corpora under ``out``. Returns files written -> records."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}

    notes = out / "clinical_notes"
    notes.mkdir(exist_ok=True)
    for i in range(120):
        (notes / f"note_{i:04d}.txt").write_text(clinical_note(rng), encoding="utf-8")
    (notes / "note_0120.txt").write_text("", encoding="utf-8")  # an empty file: rejected as empty_text
    (notes / "note_0121.txt").write_bytes(b"Patient seen in clinic, temperature 38.2\xb0C, fever\n")  # Latin-1 bytes
    counts["clinical_notes/"] = 122

    tickets = [support_ticket(rng, i) for i in range(400)]
    for i in rng.sample(range(400), 20):  # customers re-sending the same ticket
        tickets.append({**tickets[i], "ticket_id": f"T-{20000 + i}"})
    lines = [json.dumps(t).encode() for t in tickets]
    lines += [
        b'{"ticket_id": "T-90001", "subject": "Broken", "body": "My printer is on fire"',  # truncated JSON
        b'{"ticket_id": "T-90002", "subject": "Accents", "body": "Caf\xe9 wifi is down since Monday morning."}',
        b'{"ticket_id": "T-90003", "subject": "No body here"}',
        b'{"ticket_id": "T-90004", "subject": "Number", "body": 12345}',
        b'{"ticket_id": "T-90005", "subject": "Empty", "body": "   "}',
        b'["not", "an", "object"]',
    ]
    rng.shuffle(lines)
    (out / "support_tickets.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    counts["support_tickets.jsonl"] = len(lines)

    with open(out / "job_posts.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["post_id", "department", "text"])
        for i in range(250):
            w.writerow([f"J{i:04d}", rng.choice(["operations", "sales", "facilities", "front desk"]), job_post(rng)])
    counts["job_posts.csv"] = 250

    pages = [web_page(rng) for _ in range(500)]
    pages += [near_duplicate(rng, p) for p in rng.sample(pages, 40) if len(p) > 200]
    pages += rng.sample(pages, 30)  # exact reposts
    rng.shuffle(pages)
    with gzip.GzipFile(out / "web_scrape.jsonl.gz", "wb", mtime=0) as fh:
        for i, p in enumerate(pages):
            fh.write(json.dumps({"url": f"https://site{i % 37}.example/page/{i}", "content": p}).encode() + b"\n")
    counts["web_scrape.jsonl.gz"] = len(pages)
    return counts


def write_corpus(path: Path, docs: int, words: int = 300, seed: int = 0, dup_rate: float = 0.1) -> None:
    """A benchmark corpus: ``docs`` JSONL documents of about ``words`` words, with
    ``dup_rate`` of them exact or near copies of earlier ones."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    recent: list[str] = []
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(docs):
            if recent and rng.random() < dup_rate:
                src = rng.choice(recent)
                text = src if rng.random() < 0.5 else near_duplicate(rng, src)
            else:
                text = document(rng, words)
                if len(recent) < 1000:
                    recent.append(text)
                else:
                    recent[rng.randrange(1000)] = text
            fh.write(json.dumps({"text": text, "n": i}) + "\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m curate.synth", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("samples", help="write the demo corpora")
    s.add_argument("out", type=Path)
    s.add_argument("--seed", type=int, default=7)
    c = sub.add_parser("corpus", help="write a benchmark corpus (JSONL)")
    c.add_argument("out", type=Path)
    c.add_argument("--docs", type=int, default=100_000)
    c.add_argument("--words", type=int, default=300)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--dup-rate", type=float, default=0.1)
    args = ap.parse_args(argv)
    if args.cmd == "samples":
        for name, n in write_samples(args.out, args.seed).items():
            print(f"{args.out / name}: {n} records")
    else:
        write_corpus(args.out, args.docs, args.words, args.seed, args.dup_rate)
        print(f"{args.out}: {args.docs} documents")


if __name__ == "__main__":
    main()


# ---------------------------------------------------------------------------
# Labelled near-duplicate evaluation set

BOILERPLATE_HEADERS = [
    "Home > News > Local. Posted by the editorial team.",
    "Menu | Search | Sign in | Subscribe for updates.",
    "You are reading the archive edition of this article.",
    "Skip to content. Accessibility options are available below.",
]
BOILERPLATE_FOOTERS = [
    "Share this article. Comments are closed. All rights reserved.",
    "Related stories appear below. Sign up for our weekly letter.",
    "Printed from the online edition. Report an error to the desk.",
    "Follow us for more. Terms apply. Contact the newsroom for corrections.",
]


def _sentences(rng: random.Random, n: int) -> list[str]:
    return [sentence(rng) for _ in range(n)]


def _variant(rng: random.Random, sents: list[str], kind: str, strength: float) -> list[str]:
    """Apply one kind of edit; ``strength`` in [0, 1] scales how much changes."""
    out = list(sents)
    if kind == "edit":  # substitute words in place
        words = " ".join(out).split(" ")
        for _ in range(max(1, int(len(words) * strength * 0.12))):
            i = rng.randrange(len(words))
            words[i] = rng.choice(NOUN + ADJ + VERB)
        return [" ".join(words)]
    if kind == "reorder":  # move blocks of sentences around
        for _ in range(max(1, int(len(out) * strength * 0.5))):
            i, j = rng.randrange(len(out)), rng.randrange(len(out))
            out[i], out[j] = out[j], out[i]
        return out
    if kind == "insert":  # new sentences inserted at random places
        for _ in range(max(1, int(len(out) * strength * 0.4))):
            out.insert(rng.randrange(len(out) + 1), sentence(rng))
        return out
    if kind == "delete":  # sentences dropped
        for _ in range(min(len(out) - 2, max(1, int(len(out) * strength * 0.4)))):
            out.pop(rng.randrange(len(out)))
        return out
    if kind == "boilerplate":  # header/footer swapped, body kept
        return [rng.choice(BOILERPLATE_HEADERS)] + out[1:-1] + [rng.choice(BOILERPLATE_FOOTERS)]
    if kind == "format":  # case, spacing and punctuation only: identical after normalisation
        text = " ".join(out)
        return [text.upper().replace(". ", ".\n\n").replace(" ", "  ", 5)]
    if kind == "exact":
        return out
    raise ValueError(kind)


def near_duplicate_eval_set(n_groups: int = 600, n_negatives: int = 600, seed: int = 11) -> list[dict]:
    """Source documents, one variant each (known kind and strength), and unrelated negatives.

    Every record carries ``group`` (its source's id) and ``kind``; variants
    also carry ``true_jaccard``: the exact Jaccard of their 5-word shingle
    sets with the source, computed with curate's reference shingler. Labels
    come from that measured value, so the generator cannot flatter the
    detector: a variant is a near-duplicate iff ``true_jaccard >= threshold``.
    """
    from curate.minhash import shingles

    rng = random.Random(seed)
    kinds = ["edit", "reorder", "insert", "delete", "boilerplate", "format", "exact"]
    records: list[dict] = []
    for g in range(n_groups):
        n = rng.randint(10, 30)
        body = _sentences(rng, n)
        sents = [rng.choice(BOILERPLATE_HEADERS)] + body + [rng.choice(BOILERPLATE_FOOTERS)]
        source = " ".join(sents)
        kind = kinds[g % len(kinds)]
        strength = rng.random()
        variant = " ".join(_variant(rng, sents, kind, strength))
        a, b = set(shingles(source)), set(shingles(variant))
        records.append({"id": f"g{g}-src", "text": source, "group": f"g{g}", "kind": "source"})
        records.append(
            {
                "id": f"g{g}-var",
                "text": variant,
                "group": f"g{g}",
                "kind": kind,
                "strength": round(strength, 3),
                "true_jaccard": round(len(a & b) / len(a | b), 4),
            }
        )
    for k in range(n_negatives):
        records.append(
            {"id": f"neg{k}", "text": document(rng, rng.randint(60, 400)), "group": f"neg{k}", "kind": "negative"}
        )
    rng.shuffle(records)
    # sources before their variants, so "keep first" keeps the source
    records.sort(key=lambda r: r["kind"] != "source")
    return records
