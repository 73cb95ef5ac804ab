"""Errors users see. Each says what is wrong and what to do about it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CurateError(Exception):
    """Base class: an error with a message meant for the user, no traceback needed."""


class RecipeError(CurateError):
    """The recipe (or a CLI option that mirrors it) is invalid. Raised before any work."""


class InputError(CurateError):
    """An input cannot be read at all (missing, unreadable, unknown format)."""


class ConservationError(CurateError):
    """A stage lost or invented records: in != kept + rejected. Always a bug."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' Did you mean 'x'?' when a close match exists, else ''."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{match[0]}'?" if match else ""
