"""Prompt tokens counted as the server counts them, for a plugin's own tests (open_clip's CLIP tokenizer).

The server skips a plugin task whose prompt is longer than the model's text context (77 tokens for EchoCLIP,
start and end tokens included): its registry counts with the model's tokenizer. `clip_token_counter()` gives
a plugin author the same count, so a test catches the prompt before a server skips it::

    load_registry(count_tokens=clip_token_counter(), context_length=CONTEXT_LENGTH)

open_clip (the server extra) is imported only when a counter is made: `echosearch.tasks` stays numpy-only.
"""

from __future__ import annotations

from collections.abc import Callable

from echosearch.tasks.spec import DEFAULT_CONTEXT_LENGTH

CONTEXT_LENGTH = DEFAULT_CONTEXT_LENGTH  # EchoCLIP's text context, start and end tokens included


def clip_token_counter() -> Callable[[str], int]:
    """count_tokens(text): the BPE tokens of `text` plus start and end, with EchoCLIP's (CLIP's) tokenizer.

    ImportError saying what to install when open_clip is absent.
    """
    try:
        from open_clip.tokenizer import SimpleTokenizer
    except ImportError as exc:
        raise ImportError(
            "counting prompt tokens needs open_clip's tokenizer: pip install open-clip-torch "
            "(it comes with echosearch[server])"
        ) from exc
    tokenizer = SimpleTokenizer()

    def count_tokens(text: str) -> int:
        return len(tokenizer.encode(text)) + 2

    return count_tokens
