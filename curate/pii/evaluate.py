"""Measure a scrubber on labelled data: what it removed, what it left, span by span.

Labelled data is JSONL, one ``{"text", "spans": [{"start", "end", "type"}]}``
per line (the format of the public sets in ``shared/pii-eval/`` and of
``curate pii train``). The types are the source's own labels; a label map
names which of them are identifiers and under which entity type.

Two measures, both on the scrubbed *output text*, so any scrubber (ours,
Presidio's default engine, a user's) is measured the same way:

* **Token measure** (what a reader of the output can still see). Tokens are
  words of 3 or more letters or runs of digits. An identifier token (inside a
  gold span) is *removed* when the output no longer has it at its place; an
  ordinary token (outside every gold span) is *kept* when it survives. Tokens
  are aligned input to output with ``difflib`` so a token that also appears
  elsewhere in the text still counts where it was. A year alone inside a date
  may stay (Safe Harbor keeps years).
* **Span measure** (the detector): a gold span is found when detections
  cover at least 90% of its characters; a detection is correct when it
  overlaps a gold span.
"""

from __future__ import annotations

import difflib
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from curate.errors import CurateError

_TOKEN = re.compile(r"\d+|[^\W\d_]{3,}")
_YEAR = re.compile(r"(?:19|20)\d\d")

# Entity types whose tokens are matched by exact structure (the "structured identifiers").
STRUCTURED = frozenset(
    {"EMAIL_ADDRESS", "PHONE_NUMBER", "US_SSN", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "MEDICAL_RECORD_NUMBER",
     "HEALTH_PLAN_ID", "ID_NUMBER", "ES_NIF", "UK_NINO", "FR_INSEE", "DE_TAX_ID", "IT_FISCAL_CODE", "LICENSE_NUMBER",
     "ACCOUNT_NUMBER", "MAC_ADDRESS"}
)  # fmt: skip

# Source labels of the public sets in shared/pii-eval onto curate's entity types. A label mapped to
# None is not an identifier: its tokens count as neither identifier nor ordinary.
LABEL_MAPS: dict[str, dict[str, str | None]] = {
    "meddocan": {
        "NOMBRE_SUJETO_ASISTENCIA": "PERSON", "NOMBRE_PERSONAL_SANITARIO": "PERSON",
        "FAMILIARES_SUJETO_ASISTENCIA": "PERSON", "CALLE": "STREET_ADDRESS", "TERRITORIO": "LOCATION",
        "PAIS": "LOCATION", "FECHAS": "DATE_TIME", "EDAD_SUJETO_ASISTENCIA": "AGE", "SEXO_SUJETO_ASISTENCIA": "SEX",
        "ID_SUJETO_ASISTENCIA": "MEDICAL_RECORD_NUMBER", "ID_ASEGURAMIENTO": "HEALTH_PLAN_ID",
        "ID_TITULACION_PERSONAL_SANITARIO": "LICENSE_NUMBER", "ID_CONTACTO_ASISTENCIAL": "ID_NUMBER",
        "ID_EMPLEO_PERSONAL_SANITARIO": "ID_NUMBER", "CORREO_ELECTRONICO": "EMAIL_ADDRESS",
        "NUMERO_TELEFONO": "PHONE_NUMBER", "NUMERO_FAX": "PHONE_NUMBER", "HOSPITAL": "ORGANIZATION",
        "CENTRO_SALUD": "ORGANIZATION", "INSTITUCION": "ORGANIZATION", "PROFESION": "PROFESSION",
        "OTROS_SUJETO_ASISTENCIA": "OTHER",
    },
    # Social posts: person names are the identifiers; places, groups, products are ordinary text.
    "wnut17": {"person": "PERSON", "location": None, "group": None, "corporation": None, "product": None,
               "creative-work": None},
    "deidgate": {
        "name": "PERSON", "mrn": "MEDICAL_RECORD_NUMBER", "date": "DATE_TIME", "phone": "PHONE_NUMBER",
        "fax": "PHONE_NUMBER", "email": "EMAIL_ADDRESS", "ssn": "US_SSN", "geo": "LOCATION", "url": "URL",
        "ip": "IP_ADDRESS", "device": "DEVICE_ID", "account": "ACCOUNT_NUMBER", "health_plan": "HEALTH_PLAN_ID",
        "license": "LICENSE_NUMBER", "vehicle": "VEHICLE_ID", "biometric": "BIOMETRIC_ID", "photo": "PHOTO",
        "other": "ID_NUMBER",
    },
}  # fmt: skip


class LabelledDataError(CurateError):
    """A labelled file that cannot be read as {text, spans} records."""


@dataclass
class LabelledDoc:
    id: str
    text: str
    spans: list[tuple[int, int, str]]  # (start, end, entity type) after the label map
    ignored: list[tuple[int, int]] = field(default_factory=list)  # spans of labels mapped to None


def read_labelled(path: str | Path, label_map: dict[str, str | None] | None = None) -> list[LabelledDoc]:
    """Labelled JSONL -> documents. Unmapped labels are kept as they are when no map is given;
    with a map, a label missing from it is an error (a silent drop would score it as ordinary text)."""
    docs = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                text, raw = obj["text"], obj.get("spans", [])
                spans, ignored = [], []
                for s in raw:
                    start, end, label = int(s["start"]), int(s["end"]), str(s["type"])
                    if not 0 <= start < end <= len(text):
                        raise ValueError(f"span {start}-{end} outside the text (length {len(text)})")
                    if label_map is None:
                        spans.append((start, end, label))
                    elif label not in label_map:
                        raise ValueError(f"label '{label}' is not in the label map (map it to a type or to null)")
                    elif label_map[label] is None:
                        ignored.append((start, end))
                    else:
                        spans.append((start, end, label_map[label]))
            except (ValueError, KeyError, TypeError) as e:
                raise LabelledDataError(f"{path}:{n}: {e}") from None
            docs.append(LabelledDoc(str(obj.get("id", n)), text, spans, ignored))
    return docs


def _tokens(text: str) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(text)]


@dataclass
class TokenCounts:
    removed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    total: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    ordinary_kept: int = 0
    ordinary_total: int = 0

    def add_doc(self, doc: LabelledDoc, output: str | None) -> None:
        """``output`` None: the record was withheld (quarantined), so nothing of it survives."""
        tokens = _tokens(doc.text)
        survived = [False] * len(tokens)
        if output is not None:
            out = [t[2] for t in _tokens(output)]
            matcher = difflib.SequenceMatcher(None, [t[2] for t in tokens], out, autojunk=False)
            for a, _, size in matcher.get_matching_blocks():
                for i in range(a, a + size):
                    survived[i] = True
        for (start, end, tok), alive in zip(tokens, survived):
            gold = next((s for s in doc.spans if s[0] < end and start < s[1]), None)
            if gold is None:
                if any(s < end and start < e for s, e in doc.ignored):
                    continue
                self.ordinary_total += 1
                self.ordinary_kept += alive
                continue
            if gold[2] == "DATE_TIME" and _YEAR.fullmatch(tok):
                continue
            self.total[gold[2]] += 1
            self.removed[gold[2]] += not alive

    def summary(self) -> dict:
        total = sum(self.total.values())
        s_total = sum(v for k, v in self.total.items() if k in STRUCTURED)
        s_removed = sum(v for k, v in self.removed.items() if k in STRUCTURED)
        return {
            "removed": _ratio(sum(self.removed.values()), total),
            "ordinary_kept": _ratio(self.ordinary_kept, self.ordinary_total),
            "structured_removed": _ratio(s_removed, s_total),
            "identifier_tokens": total,
            "ordinary_tokens": self.ordinary_total,
            "removed_by_type": {e: _ratio(self.removed[e], n) for e, n in sorted(self.total.items())},
            "tokens_by_type": dict(sorted(self.total.items())),
        }


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def span_scores(docs: Sequence[LabelledDoc], detected: Iterable[Sequence[tuple[int, int, str]]]) -> dict:
    """Gold span found: >= 90% of its characters covered by detections of any type (what matters
    for privacy is that the text is gone). Detection correct: it overlaps a gold span."""
    found, total = defaultdict(int), defaultdict(int)
    ok, n_det = 0, 0
    for doc, spans in zip(docs, detected):
        covered = bytearray(len(doc.text))
        for s, e, _ in spans:
            covered[s:e] = b"\x01" * (e - s)
        for s, e, ent in doc.spans:
            total[ent] += 1
            found[ent] += sum(covered[s:e]) >= 0.9 * (e - s)
        for s, e, _ in spans:
            n_det += 1
            ok += any(gs < e and s < ge for gs, ge, _ in doc.spans) or any(gs < e and s < ge for gs, ge in doc.ignored)
    recall = _ratio(sum(found.values()), sum(total.values()))
    return {
        "precision": _ratio(ok, n_det),
        "recall": recall,
        "gold_spans": sum(total.values()),
        "detected_spans": n_det,
        "recall_by_type": {e: _ratio(found[e], n) for e, n in sorted(total.items())},
    }


def evaluate(docs: Sequence[LabelledDoc], outputs: Sequence[str | None], detected=None) -> dict:
    counts = TokenCounts()
    for doc, out in zip(docs, outputs):
        counts.add_doc(doc, out)
    result = {"docs": len(docs), "withheld": sum(o is None for o in outputs), **counts.summary()}
    if detected is not None:
        result["spans"] = span_scores(docs, detected)
    return result
