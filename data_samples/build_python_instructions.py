"""Build data_samples/python_instructions: an Alpaca-style dataset saved with `datasets.save_to_disk`.

    python data_samples/build_python_instructions.py

The answers are text written by others: the first paragraph of the docstrings of public functions
in Python's standard library (PSF licence), as installed with the interpreter that runs this. The
questions follow a few self-instruct phrasings. Left in on purpose, as a raw instruction set has
them: the same docstring reached under two names (os.path.join and posixpath.join: exact
duplicates once the name is masked), functions with no docstring (empty outputs) and one-word
docstrings (too short to teach anything).
"""

from __future__ import annotations

import importlib
import inspect
import random
import re
from pathlib import Path

MODULES = [
    "os", "os.path", "posixpath", "shutil", "json", "re", "math", "statistics", "random", "string", "textwrap",
    "itertools", "functools", "operator", "collections", "heapq", "bisect", "datetime", "calendar", "time",
    "pathlib", "glob", "fnmatch", "tempfile", "csv", "zipfile", "gzip", "base64", "hashlib", "hmac", "secrets",
    "uuid", "urllib.parse", "html", "difflib", "copy", "pprint", "shlex", "platform", "getpass", "locale",
]  # fmt: skip
ASKS = [
    "What does `{name}` do in Python?",
    "Explain the Python function `{name}`.",
    "Describe what `{name}{sig}` returns or does.",
    "In Python's standard library, what is `{name}` for?",
]


def first_paragraph(doc: str | None) -> str:
    """The docstring's first paragraph, past a builtin's signature line ("time_ns() -> int")."""
    paras = [" ".join(p.split()) for p in inspect.cleandoc(doc or "").split("\n\n")]
    while len(paras) > 1 and re.fullmatch(r"[\w.]+\(.*\)(?: -> .*)?", paras[0]):
        paras.pop(0)
    return paras[0] if paras else ""


def records(seed: int = 3) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for modname in MODULES:
        mod = importlib.import_module(modname)
        for attr in sorted(dir(mod)):
            if attr.startswith("_"):
                continue
            fn = getattr(mod, attr)
            if not (inspect.isfunction(fn) or inspect.isbuiltin(fn)):
                continue
            try:
                sig = str(inspect.signature(fn))
            except (TypeError, ValueError):
                sig = "(...)"
            name = f"{modname}.{attr}"
            out.append({
                "instruction": rng.choice(ASKS).format(name=name, sig=sig if len(sig) < 60 else "(...)"),
                "input": "",
                "output": first_paragraph(fn.__doc__),
                "source": f"docstring of {name}, Python standard library (PSF License)",
            })  # fmt: skip
    rng.shuffle(out)
    return out


def main() -> None:
    import datasets

    rows = records()
    ds = datasets.Dataset.from_list(rows)
    out = Path(__file__).resolve().parent / "python_instructions"
    ds.save_to_disk(str(out))
    print(f"{len(rows)} records -> {out}")


if __name__ == "__main__":
    main()
