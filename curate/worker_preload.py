"""Imported once by the forkserver that pool workers fork from (see curate.executor._context).

Imports the modules every task needs; the runner adds the recipe's built-in
stage modules and their heavy imports (``Stage.preload``: compiled kernels,
spaCy, Presidio), only for the stages a recipe uses (plugins load in each
worker). Nothing here may start a polars or pyarrow thread pool, because the
workers are forked from this process.
"""

import pyarrow.compute  # noqa: F401  polars imports it on a Series' first build from Arrow (25 ms a process)

import curate.executor  # noqa: F401
import curate.recipe  # noqa: F401
