"""Per-file metadata from a CSV manifest: the one format shared by `ingest --manifest` and `bulk embed --manifest`.

Columns: `path` (or `uri`) names the file; `study_id`, `patient_id`, `view` and `acquisition_time`
(ISO 8601) are the metadata fields; every other column becomes a tag. Empty cells are left unset.
A relative `path` is relative to the manifest's own folder; a value with a scheme (`s3://…`) is a URI and is
matched as written. Problems name the row, the way a person finds it in a spreadsheet (the header is row 1).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from echosearch.client.params import META_FIELDS, UsageError, parse_time
from echosearch.client.types import VideoMetadata

LOCATION_COLUMNS = ("path", "uri")


class ManifestError(UsageError):
    """A manifest the user must fix: a missing column, an unparseable row, a duplicate or unknown path."""


def location_key(location: str | Path, base: Path | None = None) -> str:
    """How a file is matched: a URI as written, a local path absolute and normalised."""
    text = str(location).strip()
    if "://" in text:
        return text
    path = Path(text).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    return str(path.resolve())


@dataclass(frozen=True)
class Manifest:
    """Metadata by file: look a file up with `metadata_for`; `unused` lists rows no file matched."""

    source: Path
    rows: Mapping[str, tuple[int, VideoMetadata]]  # location key -> (row number, metadata)

    def metadata_for(self, location: str | Path) -> VideoMetadata | None:
        entry = self.rows.get(location_key(location))
        return None if entry is None else entry[1]

    def unused(self, seen: set[str]) -> list[tuple[int, str]]:
        """(row, location) of every row whose file is not among `seen` (location keys), in file order."""
        return sorted((row, key) for key, (row, _) in self.rows.items() if key not in seen)

    def check_matches(self, files: Iterable[str | Path]) -> None:
        """ManifestError unless every file has a row and every row names one of `files` (local paths or URIs).

        The one rule of `ingest PATH --manifest` and `bulk embed SOURCE --manifest`: a manifest whose paths do
        not match the files would otherwise leave their metadata out without a word.
        """
        keys = {location_key(f): str(f) for f in files}
        unlisted = [shown for key, shown in keys.items() if key not in self.rows]
        if unlisted:
            listed = ", ".join(unlisted[:5]) + (f" and {len(unlisted) - 5} more" if len(unlisted) > 5 else "")
            raise ManifestError(f"{len(unlisted)} file(s) are not in the manifest {self.source}: {listed}")
        unused = self.unused(set(keys))
        if unused:
            rows = "; ".join(f"row {row}: {key}" for row, key in unused[:5])
            raise ManifestError(f"{self.source}: {len(unused)} row(s) match no file under the given paths ({rows})")

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[str]:
        return iter(self.rows)


def merge(base: VideoMetadata, override: VideoMetadata) -> VideoMetadata:
    """`override`'s set fields and tags win over `base`'s (explicit --meta over a manifest or a file's header)."""
    fields = {f: getattr(override, f) for f in META_FIELDS if getattr(override, f) is not None}
    return replace(base, tags={**base.tags, **override.tags}, **fields)


def read_manifest(path: str | Path) -> Manifest:
    """Parse a manifest CSV; ManifestError names the file and row of the first problem."""
    source = Path(path)
    try:
        with source.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            location = _location_column(source, header)
            rows: dict[str, tuple[int, VideoMetadata]] = {}
            for number, raw in enumerate(reader, start=2):
                key, meta = _parse_row(source, number, location, raw)
                if key in rows:
                    raise ManifestError(f"{source} row {number}: {key} already appears in row {rows[key][0]}")
                rows[key] = (number, meta)
    except FileNotFoundError:
        raise ManifestError(f"manifest {source} does not exist") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise ManifestError(f"manifest {source} is not a UTF-8 CSV file ({e})") from None
    return Manifest(source, rows)


def _location_column(source: Path, header: list[str]) -> str:
    present = [c for c in LOCATION_COLUMNS if c in header]
    if len(present) != 1:
        raise ManifestError(
            f"manifest {source} needs exactly one of the columns 'path' or 'uri' (found columns: {', '.join(header) or 'none'})"
        )
    return present[0]


def _parse_row(
    source: Path, number: int, location: str, raw: dict[str | None, str | None]
) -> tuple[str, VideoMetadata]:
    if None in raw:  # more cells than header columns
        raise ManifestError(f"{source} row {number}: more cells than the header has columns")
    cells = {str(k).strip(): (v or "").strip() for k, v in raw.items()}
    where = cells.get(location, "")
    if not where:
        raise ManifestError(f"{source} row {number}: the '{location}' cell is empty")
    fields: dict[str, object] = {}
    tags: dict[str, str] = {}
    for column, value in cells.items():
        if column == location or not value:
            continue
        if column == "acquisition_time":
            try:
                fields[column] = parse_time(value, f"{source} row {number}: acquisition_time")
            except UsageError as e:
                raise ManifestError(str(e)) from None
        elif column in META_FIELDS:
            fields[column] = value
        else:
            tags[column] = value
    return location_key(where, source.parent.resolve()), VideoMetadata(tags=tags, **fields)  # type: ignore[arg-type]
