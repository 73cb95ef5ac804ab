"""Imported once by the forkserver that pool workers fork from (see curate.executor._context).

Imports the modules every task needs; the runner adds the recipe's built-in
stage modules and their heavy imports (``Stage.preload``: compiled kernels,
spaCy, Presidio), only for the stages a recipe uses (plugins load in each
worker). Nothing here may start a polars or pyarrow thread pool, because the
workers are forked from this process.

The forkserver also exits without tearing its interpreter down (see _exit_now): it outlives
the run's last line by that teardown (0.1-0.2 s with polars, pyarrow and the stages' libraries
loaded), holding the stderr it shares with the command, so whatever reads the command's output
to its end (a pipe, `| tee`, CI's log) waited that long for nothing.
"""

import atexit
import logging
import multiprocessing.forkserver
import sys

import pyarrow.compute  # noqa: F401  polars imports it on a Series' first build from Arrow (25 ms a process)

import curate.executor  # noqa: F401
import curate.recipe  # noqa: F401


def _in_forkserver() -> bool:
    """Whether this import runs in the forkserver's preload (multiprocessing.forkserver.main)."""
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "main" and code.co_filename == multiprocessing.forkserver.__file__:
            return True
        frame = frame.f_back
    return False


def _exit_now() -> None:
    """The forkserver's end (its run's main process closed the pipe it waits on): flush what it
    may have to say, then leave. Its forked workers never get here (they end with os._exit)."""
    from curate._entry import exit_without_teardown

    logging.shutdown()
    exit_without_teardown(0)


IN_FORKSERVER = _in_forkserver()
if IN_FORKSERVER:
    atexit.register(_exit_now)
