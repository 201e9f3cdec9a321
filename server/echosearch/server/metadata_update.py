"""A change to a stored video's metadata: what to set and what to remove, validated once, applied by the catalog."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from echosearch.server.errors import InvalidRequestError
from echosearch.server.records import VideoMetadata

FIELDS = ("study_id", "patient_id", "view", "acquisition_time")
TAG_PREFIX = "tag."


@dataclass(frozen=True)
class MetadataChange:
    """Set the given fields and tags (None fields are left alone), clear `clear_fields`, drop `remove_tags`."""

    set: VideoMetadata = field(default_factory=VideoMetadata)
    clear_fields: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        return not (self.clear_fields or self.remove_tags or self.set.tags) and all(
            getattr(self.set, f) is None for f in FIELDS
        )

    def apply(self, before: VideoMetadata) -> VideoMetadata:
        """The metadata after this change."""
        fields = {f: getattr(self.set, f) for f in FIELDS if getattr(self.set, f) is not None}
        fields.update({f: None for f in self.clear_fields})
        tags = {k: v for k, v in before.tags.items() if k not in self.remove_tags}
        tags.update(self.set.tags)
        return replace(before, tags=tags, **fields)

    def describe(self, before: VideoMetadata, after: VideoMetadata) -> str:
        """What changed, as the change log's JSON detail: {"set": {...}, "removed": [...]}."""
        set_: dict[str, str] = {}
        removed: list[str] = []
        for f in FIELDS:
            old, new = getattr(before, f), getattr(after, f)
            if old != new:
                if new is None:
                    removed.append(f)
                else:
                    set_[f] = new.isoformat() if hasattr(new, "isoformat") else str(new)
        for key in sorted(set(before.tags) | set(after.tags)):
            if before.tags.get(key) != after.tags.get(key):
                if key in after.tags:
                    set_[TAG_PREFIX + key] = after.tags[key]
                else:
                    removed.append(TAG_PREFIX + key)
        return json.dumps({"set": set_, "removed": removed}, sort_keys=True)


def metadata_change(set_: VideoMetadata, remove: Sequence[str]) -> MetadataChange:
    """Validate a request: `remove` names fields, `tag.KEY` or a bare tag KEY; none may also be set."""
    clear: list[str] = []
    drop: list[str] = []
    for name in remove:
        name = name.strip()
        if name in FIELDS:
            clear.append(name)
        elif name.startswith(TAG_PREFIX) and len(name) > len(TAG_PREFIX):
            drop.append(name[len(TAG_PREFIX) :])
        elif name:
            drop.append(name)
        else:
            raise InvalidRequestError("an empty name in remove; give a field name or a tag key")
    both = [f for f in clear if getattr(set_, f) is not None] + [k for k in drop if k in set_.tags]
    if both:
        raise InvalidRequestError(f"{', '.join(both)}: both set and removed in one request; do one or the other")
    change = MetadataChange(set_, tuple(dict.fromkeys(clear)), tuple(dict.fromkeys(drop)))
    if change.is_empty():
        raise InvalidRequestError("nothing to change: set a field or tag, or name one to remove")
    return change


def reingest_change(stored: VideoMetadata, given: VideoMetadata) -> MetadataChange | None:
    """An upload of stored content with metadata: its set fields and tags, when they differ (nothing removed)."""
    change = MetadataChange(given)
    if change.is_empty() or change.apply(stored) == stored:
        return None
    return change
