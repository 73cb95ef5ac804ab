"""Heavy imports of rewrite.lexicon, done once in the forkserver its workers fork from (see Stage.preload)."""

from curate.nlp import import_spacy

import_spacy()
