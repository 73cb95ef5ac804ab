"""Heavy imports of rewrite.lexicon, done once in the forkserver its workers fork from (see Stage.preload).

spaCy (without torch, see curate.nlp.light_imports); inflect (without typeguard's instrumentation,
see curate.nlp.import_inflect); lemminflect's tables (3 s, loaded on first use). Pure Python and
data: nothing here starts a thread, so forking afterwards is safe.
"""

from lemminflect import getAllInflections, getInflection

from curate.nlp import import_inflect, import_spacy

import_spacy()
import_inflect().engine()
getAllInflections("use")  # loads the inflection tables
getInflection("use", "VBZ")
