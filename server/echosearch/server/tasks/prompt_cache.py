"""Prompt-embedding cache: each (model, text) is encoded once, then served from memory or the catalog."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import numpy as np

from echosearch.server import cancellation
from echosearch.server.lru import LRUCache

log = logging.getLogger(__name__)

ENCODE_CHUNK = 256  # texts encoded per model call: a cancelled request stops between chunks


class PromptStore(Protocol):
    """Persistent prompt-embedding storage (the catalog provides exactly this)."""

    def get_prompt_embeddings(self, model_identity: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored embeddings of those texts that have one (missing texts are absent)."""
        ...

    def put_prompt_embeddings(self, model_identity: str, mapping: Mapping[str, np.ndarray]) -> None:
        """Store embeddings (text -> (D,) float32)."""
        ...


class PromptEmbeddingCache:
    """Embeds texts for one model identity, encoding only texts neither memory nor the store has.

    Thread-safe: concurrent callers asking for the same new text encode it once.
    The in-memory layer is an LRU of ``max_memory_texts`` (the store keeps everything,
    so an evicted text is re-read, never re-encoded). ``encode_texts`` must return
    (n, D) L2-normalised embeddings aligned with its input; they are stored as given.
    """

    def __init__(
        self,
        encode_texts: Callable[[Sequence[str]], np.ndarray],
        model_identity: str,
        store: PromptStore,
        *,
        max_memory_texts: int = 20_000,
    ) -> None:
        self._encode = encode_texts
        self.model_identity = model_identity
        self._store = store
        self._memory: LRUCache[str, np.ndarray] = LRUCache(max_memory_texts)
        self._lock = threading.Lock()  # serialises misses (no double encode)
        self.encoded_texts = 0  # how many texts this cache has encoded (observability, tests)
        self.hits = 0  # texts answered from memory or the catalog (distinct texts per call)
        self.misses = 0  # texts that had to be encoded

    def embed(self, texts: Sequence[str], *, persist: bool = True) -> np.ndarray:
        """(len(texts), D) float32, rows aligned with ``texts`` (duplicates allowed).

        ``persist=False`` (prompts from a request's custom task) keeps new embeddings in the
        bounded memory LRU only, so requests cannot grow the catalog.
        """
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one string")
        texts = list(texts)
        if not texts:
            raise ValueError("embed() needs at least one text")
        with self._lock:
            found = self._from_memory(texts)
            self.hits += len(found)
            missing = [t for t in dict.fromkeys(texts) if t not in found]
            if missing:
                stored = self._store.get_prompt_embeddings(self.model_identity, missing)
                found.update({t: np.asarray(e, dtype=np.float32) for t, e in stored.items() if t in set(missing)})
                self.hits += len(stored)
                to_encode = [t for t in missing if t not in found]
                self.misses += len(to_encode)
                if to_encode:
                    found.update(self._encode_and_store(to_encode, persist))
                for t in missing:
                    self._memory.put(t, found[t])
        return np.stack([found[t] for t in texts])

    def forget(self, texts: Sequence[str]) -> None:
        """Drop texts from the memory layer (their task was deleted, and the catalog no longer has them)."""
        with self._lock:
            for text in texts:
                self._memory.pop(text)

    def _from_memory(self, texts: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for t in texts:
            emb = self._memory.get(t)
            if emb is not None:
                found[t] = emb
        return found

    def _encode_and_store(self, texts: list[str], persist: bool = True) -> dict[str, np.ndarray]:
        parts = []
        for start in range(0, len(texts), ENCODE_CHUNK):
            cancellation.check()
            parts.append(np.asarray(self._encode(texts[start : start + ENCODE_CHUNK]), dtype=np.float32))
        emb = np.concatenate(parts)
        if emb.ndim != 2 or emb.shape[0] != len(texts):
            raise ValueError(f"encode_texts returned shape {emb.shape} for {len(texts)} texts")
        self.encoded_texts += len(texts)
        mapping = {t: emb[i] for i, t in enumerate(texts)}
        log.debug("encoded %d new prompt text(s) for model %s", len(texts), self.model_identity)
        if not persist:
            return mapping
        try:
            self._store.put_prompt_embeddings(self.model_identity, mapping)
        except Exception:
            # The embeddings are still right; keep them in memory and carry on scoring.
            log.warning("could not persist %d prompt embedding(s); kept in memory only", len(texts), exc_info=True)
        return mapping
