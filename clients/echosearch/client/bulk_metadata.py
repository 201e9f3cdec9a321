"""Manifest corrections of a shard folder: metadata changed after `bulk embed`, applied by `bulk load`.

Shards are never rewritten for metadata (they are large, and a rewritten shard would be sent again). Each
`bulk embed --manifest` run compares the manifest with the metadata the shards recorded, and writes the
differences to DIR/metadata_changes.jsonl, one JSON object a video:
`{"sha256", "source_uri", "embedded": {...}, "manifest": {...}}`. `bulk load` then changes, on each stored
video, only the fields and tags the manifest changed (UpdateVideoMetadata); what the manifest did not change
(an edit made on the server with `tag`, say) stays as it is. Standard library only: `bulk load` is a light client.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from echosearch.client.manifest import Manifest
from echosearch.client.output import jsonable
from echosearch.client.params import META_FIELDS, parse_time
from echosearch.client.types import VideoMetadata

CHANGES_FILE = "metadata_changes.jsonl"
TAG_PREFIX = "tag."


@dataclass(frozen=True)
class MetadataCorrection:
    """One video whose manifest metadata differs from what its shard recorded when it was embedded."""

    sha256: str
    source_uri: str
    embedded: VideoMetadata
    manifest: VideoMetadata

    def update(self) -> tuple[VideoMetadata, list[str]]:
        """(fields and tags to set, fields and `tag.KEY`s to remove): what the manifest changed."""
        old, new = self.embedded, self.manifest
        fields = {f: getattr(new, f) for f in META_FIELDS if getattr(new, f) != getattr(old, f)}
        remove = [f for f, value in fields.items() if value is None]
        tags = {k: v for k, v in new.tags.items() if old.tags.get(k) != v}
        remove += [TAG_PREFIX + k for k in sorted(set(old.tags) - set(new.tags))]
        set_ = VideoMetadata(tags=tags, **{f: v for f, v in fields.items() if v is not None})
        return set_, remove

    def applies_to(self, stored: VideoMetadata) -> bool:
        """Whether `stored` still differs from the manifest in a field or tag the manifest changed."""
        set_, remove = self.update()
        for name in remove:
            present = stored.tags.get(name[len(TAG_PREFIX) :]) if name.startswith(TAG_PREFIX) else getattr(stored, name)
            if present is not None:
                return True
        if any(getattr(set_, f) is not None and getattr(set_, f) != getattr(stored, f) for f in META_FIELDS):
            return True
        return any(stored.tags.get(k) != v for k, v in set_.tags.items())

    def to_json(self) -> str:
        return json.dumps(
            {
                "sha256": self.sha256,
                "source_uri": self.source_uri,
                "embedded": jsonable(self.embedded),
                "manifest": jsonable(self.manifest),
            },
            ensure_ascii=False,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, line: str) -> MetadataCorrection:
        row = json.loads(line)
        return cls(row["sha256"], row["source_uri"], _metadata(row["embedded"]), _metadata(row["manifest"]))


def _metadata(d: Mapping[str, Any]) -> VideoMetadata:
    when = d.get("acquisition_time")
    return VideoMetadata(
        study_id=d.get("study_id"),
        patient_id=d.get("patient_id"),
        view=d.get("view"),
        acquisition_time=parse_time(when, "acquisition_time") if when else None,
        tags=dict(d.get("tags") or {}),
    )


def as_client_metadata(m: Any) -> VideoMetadata:
    """A metadata record with VideoMetadata's fields (e.g. the server's, read from a shard) as the client's."""
    return VideoMetadata(**{f: getattr(m, f) for f in META_FIELDS}, tags=dict(m.tags or {}))


def find_corrections(
    hashes: Mapping[str, str], manifest: Manifest, embedded: Mapping[str, VideoMetadata]
) -> list[MetadataCorrection]:
    """The videos of this run (`hashes`: source URI -> sha256) whose manifest row differs from their shard's."""
    found: dict[str, MetadataCorrection] = {}
    for uri, sha in sorted(hashes.items()):
        if sha in found or sha not in embedded:
            continue
        wanted = manifest.metadata_for(uri) or VideoMetadata()
        if _normalised(wanted) != _normalised(embedded[sha]):
            found[sha] = MetadataCorrection(sha, uri, embedded[sha], wanted)
    return list(found.values())


def _normalised(m: VideoMetadata) -> VideoMetadata:
    return VideoMetadata(m.study_id or None, m.patient_id or None, m.view or None, m.acquisition_time, dict(m.tags))


def read_corrections(out_dir: Path) -> list[MetadataCorrection]:
    """DIR/metadata_changes.jsonl, or [] when there is none."""
    path = Path(out_dir) / CHANGES_FILE
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as f:
        return [MetadataCorrection.from_json(line) for line in f if line.strip()]


def write_corrections(out_dir: Path, found: Sequence[MetadataCorrection], checked: Iterable[str]) -> Path | None:
    """Record `found`, replacing the earlier entries of every video this run `checked` (sha256s); keep the rest.

    The file is written atomically and removed when nothing is left to correct.
    """
    redone = set(checked) | {c.sha256 for c in found}
    kept = [c for c in read_corrections(out_dir) if c.sha256 not in redone]
    rows = sorted([*kept, *found], key=lambda c: c.source_uri)
    path = Path(out_dir) / CHANGES_FILE
    if not rows:
        path.unlink(missing_ok=True)
        return None
    tmp = path.with_name(f".{CHANGES_FILE}.tmp")
    tmp.write_text("".join(c.to_json() + "\n" for c in rows), encoding="utf-8")
    os.replace(tmp, path)
    return path
