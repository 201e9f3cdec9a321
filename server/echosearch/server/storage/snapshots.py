"""Atomic on-disk snapshots of the store's two FAISS indexes, stamped with the catalog seq.

Layout under the index folder: `frames-<seq>.faiss`, `means-<seq>.faiss`,
optional `frames-<seq>.tomb.npy` and `means-<seq>.tomb.npy` (tombstoned ids), and `manifest.json` naming them with sizes
and CRC32s. The manifest rename is the commit point: files are written to
temporary names, fsynced and renamed first, so a crash at any moment leaves
either the old snapshot or the new one, never a mix. Anything that does not
verify is treated as missing (the store then rebuilds from the catalog).

Vectors are stored once, in the catalog: a frame index that is a plain copy of them (Flat, or an ANN index
not trained yet) gets no snapshot file, only a manifest saying so (`"rebuilt_from_catalog": true`); the
store rebuilds it, and the video means, from one scan of the catalog at open. Snapshots of format 1 (before
this rule) that hold such a copy are not read: the store rebuilds and its next save removes them.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from echosearch.server.storage.flat_storage import is_flat_factory
from echosearch.server.storage.index import VectorIndex

log = logging.getLogger(__name__)

FORMAT = 2
READABLE_FORMATS = (1, 2)  # format 1 = format 2 without `rebuilt_from_catalog`
MANIFEST = "manifest.json"


def rebuilt_from_catalog(manifest: dict) -> bool:
    """Whether the manifest's frame index is a copy of the catalog's vectors: none is kept; the store rebuilds it."""
    if manifest.get("rebuilt_from_catalog"):
        return True
    # format 1 wrote the copy as a file: a Flat factory, or an ANN index still searching exactly
    return manifest.get("format") == 1 and (
        is_flat_factory(manifest.get("factory", "")) or bool(manifest.get("exact_fallback"))
    )


@dataclass
class Loaded:
    frames: VectorIndex
    means: VectorIndex
    seq: int


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(16 << 20):
            crc = zlib.crc32(chunk, crc)
    return crc


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    try:
        fsync_file(path)
    except OSError:  # some filesystems cannot fsync a directory; the rename is still atomic
        pass


def _commit(tmp: Path, final: Path) -> dict:
    fsync_file(tmp)
    os.replace(tmp, final)
    return {"file": final.name, "size": final.stat().st_size, "crc32": _crc32(final)}


def write_index(index: VectorIndex, path: Path | str) -> None:
    """Write the CPU master index to `path` (not atomic by itself: `save` writes a temporary name and renames)."""
    faiss.write_index(index.master, str(path))


def read_index(
    path: Path | str,
    factory: str,
    *,
    use_gpu: bool | None = None,
    nprobe: int | None = None,
    efsearch: int | None = None,
    tombstones: np.ndarray | None = None,
) -> VectorIndex:
    """Load an index written by `write_index`, with the tombstones saved beside it."""
    loaded = faiss.read_index(str(path))  # already downcast; re-wrapping would free it early
    if not isinstance(loaded, faiss.IndexIDMap2) and faiss.try_extract_index_ivf(loaded) is None:
        raise ValueError(f"{path} is not an id-carrying FAISS index")
    out = VectorIndex(loaded.d, factory, use_gpu=use_gpu, nprobe=nprobe, efsearch=efsearch, _loaded=loaded)
    if tombstones is not None:
        out.restore_tombstones(tombstones)
    return out


def remove_temp_files(folder: Path) -> None:
    """Delete half-written `*.tmp` files (a save that failed, e.g. on a full disk, or a crash mid-save)."""
    if not folder.is_dir():
        return
    for entry in folder.glob("*.tmp"):
        entry.unlink(missing_ok=True)
        log.info("removed an unfinished snapshot file %s", entry.name)


def save(folder: Path, frames: VectorIndex, means: VectorIndex, seq: int) -> None:
    """Write a snapshot covering catalog seq `seq`, then drop older snapshot files; on failure leave no temp file."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        _save(folder, frames, means, seq)
    except BaseException:
        remove_temp_files(folder)
        raise


def _save(folder: Path, frames: VectorIndex, means: VectorIndex, seq: int) -> None:
    manifest: dict = {
        "format": FORMAT,
        "seq": int(seq),
        "factory": frames.factory,
        "dim": frames.dim,
        "exact_fallback": frames.exact_fallback,
    }
    if frames.is_flat:
        manifest["rebuilt_from_catalog"] = True  # its file would be a second copy of the catalog's vectors
    else:
        _write_index_files(folder, frames, means, seq, manifest)
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    fsync_file(tmp)
    os.replace(tmp, folder / MANIFEST)
    fsync_dir(folder)
    keep = {manifest[k]["file"] for k in ("frames", "means", "tombstones", "mean_tombstones") if k in manifest} | {
        MANIFEST
    }
    for entry in folder.iterdir():
        if entry.name not in keep:
            entry.unlink(missing_ok=True)
    if frames.is_flat:
        log.info("saved the index manifest at seq %d (the Flat index is rebuilt from the catalog at open)", seq)
    else:
        log.info("saved index snapshot at seq %d (%d frame vectors)", seq, frames.ntotal)


def _write_index_files(folder: Path, frames: VectorIndex, means: VectorIndex, seq: int, manifest: dict) -> None:
    tmp = folder / f"frames-{seq}.faiss.tmp"
    write_index(frames, tmp)
    manifest["frames"] = _commit(tmp, folder / f"frames-{seq}.faiss")
    tmp = folder / f"means-{seq}.faiss.tmp"
    write_index(means, tmp)
    manifest["means"] = _commit(tmp, folder / f"means-{seq}.faiss")
    for name, index, key in (("frames", frames, "tombstones"), ("means", means, "mean_tombstones")):
        tomb = index.tombstones()
        if len(tomb):
            tmp = folder / f"{name}-{seq}.tomb.tmp"
            with open(tmp, "wb") as f:
                np.save(f, tomb)
            manifest[key] = _commit(tmp, folder / f"{name}-{seq}.tomb.npy")


def verified(folder: Path, entry: dict) -> Path:
    """The manifest entry's file, once its size and CRC32 match (ValueError naming it otherwise)."""
    path = folder / entry["file"]
    if path.stat().st_size != entry["size"] or _crc32(path) != entry["crc32"]:
        raise ValueError(f"{path} does not match its manifest checksum")
    return path


def load(folder: Path, factory: str, dim: int, **kwargs) -> Loaded | None:
    """The saved snapshot if present, intact and made for this factory and width; else None."""
    remove_temp_files(folder)
    manifest_path = folder / MANIFEST
    if not manifest_path.exists():
        log.info("no index snapshot in %s", folder)
        return None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("format") not in READABLE_FORMATS or manifest["dim"] != dim:
            raise ValueError(f"snapshot format/width {manifest.get('format')}/{manifest.get('dim')} not usable")
        if rebuilt_from_catalog(manifest):
            how = (
                "keeps its vectors only in the catalog"
                if manifest["format"] == FORMAT
                else (
                    "has a snapshot of the previous layout, a second copy of the catalog's vectors (removed at the save "
                    "after this rebuild)"
                )
            )
            log.info("the %s index %s; rebuilding it from the catalog", manifest["factory"], how)
            return None
        if manifest["factory"] != factory:
            log.warning(
                "index snapshot was built with %r but %r is configured; rebuilding", manifest["factory"], factory
            )
            return None
        tomb = None
        if "tombstones" in manifest:
            tomb = np.load(verified(folder, manifest["tombstones"]))
        frames = read_index(verified(folder, manifest["frames"]), factory, tombstones=tomb, **kwargs)
        kwargs = {k: v for k, v in kwargs.items() if k == "use_gpu"}
        mean_tomb = None
        if "mean_tombstones" in manifest:
            mean_tomb = np.load(verified(folder, manifest["mean_tombstones"]))
        means = read_index(verified(folder, manifest["means"]), "Flat", tombstones=mean_tomb, **kwargs)
        if frames.dim != dim or means.dim != dim:
            raise ValueError("snapshot vectors have the wrong width")
        return Loaded(frames, means, int(manifest["seq"]))
    except Exception as exc:
        log.warning("index snapshot in %s is unusable (%s); rebuilding from the catalog", folder, exc)
        return None
