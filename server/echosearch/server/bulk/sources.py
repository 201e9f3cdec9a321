"""The sources of `bulk embed`: files, folders and URIs listed with their size and modification time, and read."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

VIDEO_EXTENSIONS = frozenset({".avi", ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".ogv"})
DICOM_EXTENSIONS = frozenset({".dcm", ".dicom", ".dic"})  # folders are listed by extension (no header sniffing)
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | DICOM_EXTENSIONS


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
