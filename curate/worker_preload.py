"""Imported once by the forkserver that pool workers fork from (see curate.executor._context).

Imports the modules every task needs; stages add their own heavy imports
(``Stage.preload``: compiled kernels, spaCy, Presidio) only when a recipe
uses them. Nothing here may start a polars or pyarrow thread pool, because
the workers are forked from this process.
"""

import curate.executor  # noqa: F401
import curate.recipe  # noqa: F401
import curate.registry

curate.registry.registered()  # built-in stage modules
