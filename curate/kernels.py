"""numba kernels compiled ahead of time: built once per machine, then loaded in a millisecond.

numba's JIT costs every process that uses curate's MinHash kernels 0.7-0.9 s
of CPU even when it loads them from its cache (importing numba, its typing
and code-generation machinery, then each cached kernel): half of a
10k-record ``curate dedup``, and most of the pool's start on larger ones.
The same kernels compiled ahead of time by numba's ``pycc`` into an
extension module import in well under a millisecond, without numba.

The module is built the first time a process needs it (20-40 s, in a child
process, like the JIT's own first compile, which it replaces), into the
user's cache folder under a key of everything its machine code depends on:
the kernels' source, the installed numba, llvmlite and numpy, the Python
ABI, and the CPU. Like the JIT, it targets this CPU's instruction set, so a
cache folder shared by different machines holds one build per kind of CPU.
Concurrent processes wait for one build (a file lock); the module appears
under its final name in one rename.

Where it cannot be built (no C compiler or Python headers, a numba without
``pycc``), the failure is kept under the same key, so later processes do not
try again, and the kernels run under numba's JIT as before.
``CURATE_KERNELS=jit`` always uses the JIT; ``CURATE_KERNELS=aot`` fails
instead of falling back (for tests and for checking a machine).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import importlib.machinery
import importlib.util
import logging
import os
import platform
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

MODES = ("auto", "aot", "jit")
log = logging.getLogger(__name__)
_BUILD_TIMEOUT_S = 900
_loaded: dict[str, Any] = {}
_lock = threading.Lock()


class KernelBuildError(RuntimeError):
    """The ahead-of-time build failed (or failed before) and ``CURATE_KERNELS=aot`` allows no fallback."""


def mode() -> str:
    value = os.environ.get("CURATE_KERNELS", "auto").strip().lower() or "auto"
    if value not in MODES:
        raise ValueError(f"CURATE_KERNELS={value!r}: use one of {', '.join(MODES)}")
    return value


def load(module: str) -> Any:
    """The kernels of ``module`` (a module of numba functions with an ``EXPORTS`` dict of
    name -> numba signature): its ahead-of-time build, or the module itself (numba's JIT).

    Once per process; the result has an attribute per exported kernel either way.
    """
    with _lock:
        if module not in _loaded:
            _loaded[module] = _load(module)
        return _loaded[module]


def compiled_ahead(module: str) -> bool:
    """Whether ``load(module)`` gave (or would give, without building anything) the ahead-of-time build."""
    if module in _loaded:
        return not _is_jit(_loaded[module], module)
    return mode() != "jit" and _paths(module)[0].exists()


def build_failure(module: str) -> str | None:
    """What the failed ahead-of-time build of ``module`` on this machine said (kept from its
    attempt), or None where it did not fail."""
    failed = _paths(module)[1]
    return failed.read_text(encoding="utf-8") if failed.exists() else None


def _is_jit(kernels: Any, module: str) -> bool:
    return getattr(kernels, "__name__", None) == module


def _load(module: str) -> Any:
    how = mode()
    if how == "jit":
        return _jit(module)
    so, failed = _paths(module)
    if not so.exists() and not failed.exists():
        _build(module, so, failed)
    if so.exists():
        try:
            return _import_extension(so)
        except ImportError as e:  # damaged or foreign: build again next time, JIT now
            with contextlib.suppress(OSError):
                so.unlink()
            if how == "aot":
                raise KernelBuildError(f"{so} does not load: {e}") from e
            return _jit(module)
    if how == "aot":
        raise KernelBuildError(f"building {module} ahead of time failed (kept in {failed}):\n{build_failure(module)}")
    return _jit(module)


def _jit(module: str) -> ModuleType:
    return importlib.import_module(module)


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "curate"


@functools.cache
def _paths(module: str) -> tuple[Path, Path]:
    """Where the build of ``module`` for this machine lives, and where a failed build is recorded."""
    folder = cache_dir() / "kernels" / f"{module.rsplit('.', 1)[-1]}-{build_key(module)}"
    name = _extension_name(module) + importlib.machinery.EXTENSION_SUFFIXES[0]
    return folder / name, folder / "build-failed.txt"


def _extension_name(module: str) -> str:
    return "_aot_" + module.replace(".", "_")


def build_key(module: str) -> str:
    """A hash of everything the machine code of ``module``'s build depends on (without importing
    numba: read from files, a millisecond)."""
    h = hashlib.sha256()
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ImportError(f"no module {module}")
    h.update(Path(spec.origin).read_bytes())
    h.update(Path(__file__).read_bytes())  # how it is built
    for dep in ("numba", "llvmlite", "numpy"):
        dep_spec = importlib.util.find_spec(dep)
        origin = dep_spec.origin if dep_spec and dep_spec.origin else ""
        with contextlib.suppress(OSError):
            st = os.stat(origin)
            origin += f":{st.st_size}:{st.st_mtime_ns}"  # a reinstall or another version changes these
        h.update(origin.encode())
    h.update(f"{sys.implementation.cache_tag}:{importlib.machinery.EXTENSION_SUFFIXES[0]}".encode())
    h.update(_cpu().encode())
    return h.hexdigest()[:16]


def _cpu() -> str:
    """The CPU model and instruction-set flags (Linux), or what the platform says elsewhere."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            first = fh.read(1 << 16).split("\n\n", 1)[0]
        keep = ("vendor_id", "cpu family", "model", "model name", "flags", "Features", "CPU part")
        fields = [line for line in first.splitlines() if line.split(":", 1)[0].strip() in keep]
        if fields:
            return "\n".join(fields)
    return f"{platform.machine()}:{platform.processor()}"


def _import_extension(path: Path) -> ModuleType:
    name = path.name.split(".", 1)[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ext)
    return ext


def _build(module: str, so: Path, failed: Path) -> None:
    """Build ``so`` in a child process (numba stays out of this one), once across processes."""
    import fcntl

    so.parent.mkdir(parents=True, exist_ok=True)
    with open(so.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process building it: wait, then use its build
        if so.exists() or failed.exists():
            return
        log.warning("compiling %s for this machine's CPU, once (20-40 s; later runs load it in a millisecond)", module)
        with tempfile.TemporaryDirectory(dir=so.parent, prefix=".build-") as tmp:
            code = f"from curate.kernels import _compile; _compile({module!r}, {tmp!r})"
            try:
                done = subprocess.run(
                    [sys.executable, "-c", code],
                    capture_output=True,
                    text=True,
                    timeout=_BUILD_TIMEOUT_S,
                    env={**os.environ, "CURATE_KERNELS": "jit"},
                )
                error = "" if done.returncode == 0 else (done.stderr or done.stdout)[-4000:]
            except (OSError, subprocess.TimeoutExpired) as e:
                error = f"{type(e).__name__}: {e}"
            built = Path(tmp) / so.name
            if not error and built.exists():
                os.replace(built, so)
            else:
                failed.write_text(error or f"the build wrote no {so.name}", encoding="utf-8")


def _compile(module: str, out_dir: str) -> None:
    """In the build process: compile every kernel of ``module.EXPORTS`` for this CPU into ``out_dir``."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pycc's pending-deprecation notice: the JIT is the fallback
        from numba.pycc import CC, compiler

    class _Flags(compiler.Flags):
        """pycc's flags, releasing the GIL around each kernel (as ``nogil=True`` does under the
        JIT): threads of the process run while a kernel does (the decide phase's thread pool,
        the runner's feeder thread); pycc's own flags hold it."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.release_gil = True

    compiler.Flags = _Flags

    source = importlib.import_module(module)
    cc = CC(_extension_name(module))
    cc.output_dir = out_dir
    cc.target_cpu = "host"  # this CPU's instruction set, as the JIT would use
    for name, signature in source.EXPORTS.items():
        cc.export(name, signature)(getattr(source, name).py_func)
    cc.compile()
