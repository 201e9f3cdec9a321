"""What a search did, for `search --explain`: the backends note each plan; a caller that asks records them.

A context variable, so concurrent searches (one per gRPC worker thread) never see each other's notes, and a
search nobody records costs one lookup.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_notes: ContextVar[list[str] | None] = ContextVar("search_plans", default=None)


def note(line: str) -> None:
    """Record how a backend answered one search (kept only while a caller records)."""
    notes = _notes.get()
    if notes is not None and line not in notes:
        notes.append(line)


@contextmanager
def recording() -> Iterator[list[str]]:
    """The plans noted by the searches run inside the block, in order, each once."""
    notes: list[str] = []
    token = _notes.set(notes)
    try:
        yield notes
    finally:
        _notes.reset(token)
