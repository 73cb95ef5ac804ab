"""The `curate` console command: the CLI, then an exit that skips tearing the interpreter down.

Imported before anything else of the command, so its exit handler is registered first and runs
last: after logging's flush, multiprocessing's clean-up and the joins of threads and pools. What
it skips is the interpreter freeing every module's objects one by one, which for numba's compiled
kernels alone takes 0.3 s (a tenth of a small job). ``python -m curate.cli`` and tests calling
``curate.cli.main`` exit the ordinary way.
"""

from __future__ import annotations

import atexit
import os
import sys

_code: list[int] = []


def exit_without_teardown(code: int) -> None:
    """Flush stdout and stderr, then end the process with ``code`` at once (os._exit): no freeing
    of every module's objects. Also the pool's forkserver's way out (curate.worker_preload)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing more can be written anyway
            pass
    os._exit(code)


def _exit_now() -> None:
    if not _code:  # an exception escaped the CLI: let the interpreter report it as usual
        return
    exit_without_teardown(_code[0])


atexit.register(_exit_now)


def _exit_code(code: object) -> int:
    """What the interpreter makes of ``SystemExit(code)``: None is 0, an int itself, anything else
    (a message, which it prints) 1."""
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def main() -> None:
    from curate.cli import main as cli

    try:
        cli()
    except SystemExit as e:
        _code.append(_exit_code(e.code))
        raise
    _code.append(0)
