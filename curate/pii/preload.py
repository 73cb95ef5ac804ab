"""Heavy imports of pii.scrub, done once in the forkserver its workers fork from (see Stage.preload).

Imports only: nothing here starts threads, so forking afterwards is safe.
torch and transformers stay out (see curate.nlp.light_imports).
"""

from curate.nlp import light_imports

with light_imports():
    import presidio_analyzer  # noqa: F401
    import presidio_analyzer.predefined_recognizers  # noqa: F401
    import presidio_anonymizer  # noqa: F401
    import spacy  # noqa: F401

from curate.pii.engine import first_names  # noqa: E402

first_names()
