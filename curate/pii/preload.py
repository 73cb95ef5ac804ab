"""Heavy imports of pii.scrub, done once in the forkserver its workers fork from (see Stage.preload).

Imports only: nothing here starts threads, so forking afterwards is safe.
"""

import presidio_analyzer  # noqa: F401
import presidio_analyzer.predefined_recognizers  # noqa: F401
import presidio_anonymizer  # noqa: F401
import spacy  # noqa: F401

from curate.pii.engine import first_names

first_names()
