"""Heavy imports of rewrite.lexicon, done once in the forkserver its workers fork from (see Stage.preload).

spaCy (without torch, see curate.nlp.light_imports); inflect, whose import instruments its engine
with typeguard (2 s of parsing and recompiling its source); lemminflect's tables (3 s, loaded on
first use). Pure Python and data: nothing here starts a thread, so forking afterwards is safe.
"""

import inflect
from lemminflect import getAllInflections, getInflection

from curate.nlp import import_spacy

import_spacy()
inflect.engine()
getAllInflections("use")  # loads the inflection tables
getInflection("use", "VBZ")
