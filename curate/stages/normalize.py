"""Text normalisation: Unicode NFC, mojibake repair, control characters, whitespace."""

from __future__ import annotations

import ftfy
import polars as pl

from curate.records import append_audit
from curate.registry import Split, Stage, stage

# Repair encodings only: no quote uncurling or width folding, which would
# change text that was never broken.
_FTFY = ftfy.TextFixerConfig(normalization=None, uncurl_quotes=False, fix_character_width=False, explain=False)

# Characters that almost always mean UTF-8 was decoded as Latin-1/cp1252
# somewhere upstream ("Ã©", "â€™", "Â "). ftfy is precise but costs tens of
# microseconds per document, so it only runs on rows this prefilter flags.
_MOJIBAKE_HINT = r"[ÂÃâÐÑØÙ][\x80-\xbf€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ ¡-¿]"
# C0/C1 controls except tab and newline; zero-width and BOM characters.
_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\u200c\u200d\u2060\ufeff]"
_HSPACE = r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+"


@stage("normalize")
class Normalize(Stage):
    """Repair and normalise text: mojibake (ftfy), Unicode NFC, control chars, whitespace.

    Each kept row whose text changed gets an audit entry naming the fixes
    applied (e.g. ``normalize:mojibake,whitespace``).
    """

    fix_mojibake: bool = True
    """Repair text that was decoded with the wrong encoding (via ftfy)."""
    unicode_form: str | None = "NFC"
    """Unicode normal form (NFC, NFKC, NFD, NFKD), or null to leave as is."""
    strip_control: bool = True
    """Remove control and zero-width characters (tab and newline are kept)."""
    whitespace: bool = True
    """Unify line breaks, collapse runs of spaces/tabs inside lines (leading
    indentation is kept), trim line ends, keep at most one blank line between
    paragraphs, and strip the text's ends."""

    def process(self, batch: pl.DataFrame) -> Split:
        text = batch["text"]
        fixes: list[tuple[str, pl.Series]] = []

        if self.fix_mojibake:
            suspect = text.str.contains(_MOJIBAKE_HINT)
            if suspect.any():
                repaired = [ftfy.fix_text(t, config=_FTFY) if s else t for t, s in zip(text, suspect)]
                new = pl.Series("text", repaired, dtype=pl.String)
                fixes.append(("mojibake", new != text))
                text = new
        if self.unicode_form:
            new = text.str.normalize(self.unicode_form)
            fixes.append(("unicode", new != text))
            text = new
        if self.strip_control:
            new = text.str.replace_all(_CONTROL, "")
            fixes.append(("control", new != text))
            text = new
        if self.whitespace:
            new = (
                text.str.replace_all(r"\r\n?|[\u2028\u2029\x85]", "\n")
                .str.replace_all(r"(\S)" + _HSPACE, "${1} ")
                .str.replace_all(r"(?m)[ \t]+$", "")
                .str.replace_all(r"\n{3,}", "\n\n")
                .str.strip_chars()
            )
            fixes.append(("whitespace", new != text))
            text = new

        changed = pl.Series([False] * len(batch), dtype=pl.Boolean) if not fixes else text != batch["text"]
        labels = pl.concat_list([pl.when(mask).then(pl.lit(name)) for name, mask in fixes]) if fixes else None
        out = batch.with_columns(text.alias("text"))
        counters: dict[str, int] = {name: int(mask.sum()) for name, mask in fixes}
        if labels is not None and changed.any():
            entry = pl.lit("normalize:") + labels.list.drop_nulls().list.join(",")
            out = append_audit(out, changed, entry)
        return Split(kept=out, rejected=out.clear(), modified=int(changed.sum()), counters=counters)
