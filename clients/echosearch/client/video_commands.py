"""`echosearch tag` and `delete`: every id given is tried and reported; and a video's fields for people."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import grpc

from echosearch.client.client import ApiError, Client
from echosearch.client.output import print_json
from echosearch.client.params import UsageError, parse_metadata
from echosearch.client.types import Video


def video_fields(video: Video) -> list[tuple[str, Any]]:
    """A video's fields for people: the metadata's fields on lines of their own, not a repr."""
    fields = [(k, v) for k, v in video.__dict__.items() if k != "metadata"]
    m = video.metadata
    fields += [("study_id", m.study_id), ("patient_id", m.patient_id), ("view", m.view)]
    fields += [("acquisition_time", m.acquisition_time), ("tags", m.tags)]
    return fields


def cmd_tag(client: Client, args: argparse.Namespace) -> int:
    if not args.meta and not args.remove:
        raise UsageError("say what to change: --meta KEY=VALUE to set, --remove KEY to remove")
    metadata = parse_metadata(args.meta)
    failed = 0
    for vid in dict.fromkeys(args.video_ids):
        try:
            _, changed = client.update_video_metadata(vid, metadata, args.remove)
        except ApiError as exc:
            if exc.code not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise
            failed += 1
            status = "not found" if exc.code == grpc.StatusCode.NOT_FOUND else "refused"
            _report(args, vid, status, exc.message)
        else:
            _report(args, vid, "updated" if changed else "unchanged")
    return 1 if failed else 0


def _report(args: argparse.Namespace, vid: int, status: str, error: str = "") -> None:
    """One id's outcome: a JSON line, or a line on stdout (failures on stderr)."""
    if args.json:
        print_json({"video_id": vid, "status": status, **({"error": error} if error else {})})
    elif error:
        print(f"error: {vid}: {status}: {error}", file=sys.stderr)
    else:
        print(f"{status} {vid}")


def cmd_delete(client: Client, args: argparse.Namespace) -> int:
    """Every id is tried and reported, whatever the order; exit 1 if any failed."""
    failed = 0
    for vid in dict.fromkeys(args.video_ids):
        try:
            client.delete_video(vid)
        except ApiError as exc:
            if exc.code != grpc.StatusCode.NOT_FOUND:
                raise
            failed += 1
            _report(args, vid, "not found", exc.message)
        else:
            _report(args, vid, "deleted")
    return 1 if failed else 0
