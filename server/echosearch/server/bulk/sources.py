"""The sources of `bulk embed`: files, folders and URIs listed with their size and modification time, and read."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset({".avi", ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".ogv"})
DICOM_EXTENSIONS = frozenset({".dcm", ".dicom", ".dic"})  # folders are listed by extension (no header sniffing)
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | DICOM_EXTENSIONS
# What a file was when it was hashed: a rerun knows the sha256 of an unchanged file without reading it.
SOURCES_FILE = "sources.parquet"
SOURCES_SCHEMA = pa.schema(
    [("source_uri", pa.string()), ("size_bytes", pa.int64()), ("mtime_ns", pa.int64()), ("sha256", pa.string())]
)


@dataclass(frozen=True)
class SourceFile:
    """A file to embed: where it is, and its size and modification time when listed (-1: unknown)."""

    uri: str
    size_bytes: int
    mtime_ns: int

    @property
    def stat_key(self) -> tuple[str, int, int] | None:
        """The key of sources.parquet, or None when the filesystem gives no modification time."""
        return (self.uri, self.size_bytes, self.mtime_ns) if self.mtime_ns >= 0 else None


def _source_file(uri: str, info: pafs.FileInfo) -> SourceFile:
    mtime = info.mtime_ns
    return SourceFile(uri, int(info.size or 0), int(mtime) if mtime is not None else -1)


def list_source_files(sources: Iterable[str]) -> list[SourceFile]:
    """Files as given, folders searched recursively for media extensions; local paths absolute, URIs as URIs."""
    found: dict[str, SourceFile] = {}
    for source in sources:
        text = str(source)
        if "://" in text:
            fs, path = pafs.FileSystem.from_uri(text)
            scheme = text.split("://", 1)[0]
            prefix = f"{scheme}://"
        else:
            fs, path, prefix = pafs.LocalFileSystem(), str(Path(text).expanduser().resolve()), ""
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.Directory:
            infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
            for i in sorted(infos, key=lambda i: i.path):
                if i.type == pafs.FileType.File and Path(i.path).suffix.lower() in MEDIA_EXTENSIONS:
                    found.setdefault(prefix + i.path, _source_file(prefix + i.path, i))
        elif info.type == pafs.FileType.File:
            found.setdefault(text if prefix else path, _source_file(text if prefix else path, info))
        else:
            raise FileNotFoundError(f"{text}: no such file or folder")
    return list(found.values())


def list_sources(sources: Iterable[str]) -> list[str]:
    """The URIs of list_source_files: local paths absolute, URIs as given."""
    return [f.uri for f in list_source_files(sources)]


def read_source(uri: str) -> bytes:
    """A file's bytes from a local path or any URI pyarrow's filesystems read (s3://, gs://, hdfs://, file://)."""
    if "://" not in uri:
        return Path(uri).read_bytes()
    fs, path = pafs.FileSystem.from_uri(uri)
    with fs.open_input_stream(path) as f:
        return f.read()


def read_source_hashes(out_dir: Path) -> dict[tuple[str, int, int], str]:
    """(source URI, size, mtime in ns) -> sha256 of the files earlier runs hashed; {} when there is no record."""
    path = Path(out_dir) / SOURCES_FILE
    if not path.is_file():
        return {}
    try:
        rows = pq.read_table(path, schema=SOURCES_SCHEMA).to_pylist()
    except (pa.ArrowInvalid, OSError) as exc:  # a damaged record only costs a re-hash
        log.warning("ignoring %s (%s): unchanged files are hashed again", path, exc)
        return {}
    return {(r["source_uri"], r["size_bytes"], r["mtime_ns"]): r["sha256"] for r in rows}


def write_source_hashes(out_dir: Path, hashes: Mapping[tuple[str, int, int], str]) -> Path:
    """Replace DIR/sources.parquet (atomically) with `hashes`: (source URI, size, mtime in ns) -> sha256."""
    keys = sorted(hashes)
    table = pa.table(
        {
            "source_uri": [k[0] for k in keys],
            "size_bytes": [k[1] for k in keys],
            "mtime_ns": [k[2] for k in keys],
            "sha256": [hashes[k] for k in keys],
        },
        schema=SOURCES_SCHEMA,
    )
    path = Path(out_dir) / SOURCES_FILE
    tmp = path.with_name(f".{SOURCES_FILE}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path
