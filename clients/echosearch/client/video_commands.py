"""`echosearch videos`, `video`, `tag`, `delete` and `export`: stored videos listed, shown, changed, removed, downloaded.

`tag` and `delete` try and report every id given.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import grpc

from echosearch.client.cli_args import filter_arg, subcommand
from echosearch.client.client import ApiError, Client
from echosearch.client.output import Progress, fmt, print_json, print_table
from echosearch.client.params import UsageError, parse_filter, parse_metadata
from echosearch.client.task_results import task_result
from echosearch.client.types import Video

VIDEO_HEADERS = ["id", "source", "frames", "study", "patient", "view", "acquired", "tags"]


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """`videos`, `video`, `tag`, `delete` and `export`."""
    p = subcommand(sub, "videos", "list stored videos", [common])
    p.add_argument("--limit", type=int, default=0, help="at most this many (default all)")
    filter_arg(p)
    p = subcommand(sub, "video", "one stored video", [common])
    p.add_argument("video_id", type=int, help="a stored video's id")
    p.add_argument("--embeddings", action="store_true", help="also its frames and embeddings")
    p.add_argument(
        "--tasks",
        action="store_true",
        help="also every task's result for it (similarity and percentile, value, category)",
    )
    p = subcommand(sub, "tag", "set or remove metadata of stored videos", [common])
    p.add_argument("video_ids", type=int, nargs="+", metavar="ID")
    p.add_argument(
        "--meta",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set study_id, patient_id, view, acquisition_time; other keys are tags",
    )
    p.add_argument(
        "--remove",
        action="append",
        default=[],
        metavar="KEY",
        help="clear a field, or remove a tag (tag.KEY, or a bare KEY that is not a field)",
    )
    p = subcommand(sub, "delete", "delete stored videos, by id or by filter", [common])
    p.add_argument("video_ids", type=int, nargs="*", metavar="ID", help="the videos' ids (or --filter)")
    filter_arg(p)
    p.add_argument("--dry-run", action="store_true", help="say how many videos would be deleted; delete nothing")
    p.add_argument("--yes", action="store_true", help="delete by filter without asking")
    p = subcommand(sub, "export", "download embeddings + metadata as Parquet", [common])
    p.add_argument("out", type=Path, metavar="OUT.parquet", help="the file to write (its folder must exist)")
    filter_arg(p)


def _result_row(r: dict[str, Any]) -> list[Any]:
    task = r["task"]
    if r["error"]:
        return [task.name, task.kind, f"error: {r['error']}", "", ""]
    decision = "no threshold" if r["no_threshold"] else r["decision"]
    return [task.name, task.kind, r["result"], r["place"], decision]


def _json_result(r: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in r.items() if k != "task" and v is not None and v != ""}
    return {"task": r["task"].name, "kind": r["task"].kind, **out}


def video_fields(video: Video) -> list[tuple[str, Any]]:
    """A video's fields for people: the metadata's fields on lines of their own, not a repr."""
    fields = [(k, v) for k, v in video.__dict__.items() if k not in ("metadata", "thumbnails_withheld")]
    if video.thumbnails_withheld:
        fields.append(("thumbnails", video.thumbnails_note))
    m = video.metadata
    fields += [("study_id", m.study_id), ("patient_id", m.patient_id), ("view", m.view)]
    fields += [("acquisition_time", m.acquisition_time), ("tags", m.tags)]
    return fields


def _video_row(v: Video) -> list[Any]:
    m = v.metadata
    return [v.video_id, v.source_name, v.sampled_frames, m.study_id, m.patient_id, m.view, m.acquisition_time, m.tags]


def cmd_videos(client: Client, args: argparse.Namespace) -> int:
    rows = []
    for n, v in enumerate(client.iter_videos(parse_filter(args.filter))):
        if args.limit and n >= args.limit:
            break
        if args.json:
            print_json(v)
        else:
            rows.append(_video_row(v))
    if not args.json:
        print_table(VIDEO_HEADERS, rows)
    return 0


def cmd_video(client: Client, args: argparse.Namespace) -> int:
    video = client.get_video(args.video_id)
    frames = client.get_frames(args.video_id) if args.embeddings else []
    results = [task_result(client, t, video.video_id) for t in client.list_tasks()] if args.tasks else []
    if args.json:
        if not (args.embeddings or args.tasks):
            print_json(video)
            return 0
        out: dict[str, Any] = {"video": video, "frames": frames} if args.embeddings else {"video": video}
        if args.tasks:
            out["tasks"] = [_json_result(r) for r in results]
        print_json(out)
        return 0
    for key, value in video_fields(video):
        print(f"{key:16} {fmt(value)}")
    if frames:
        print_table(
            ["frame_id", "index", "time_s", "embedding"],
            [[f.frame_id, f.frame_index, f.timestamp, f"{len(f.embedding)}-d"] for f in frames],
        )
    if results:
        print_table(
            ["task", "kind", "result", "among the stored videos", "decision"], [_result_row(r) for r in results]
        )
    return 0


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
    """By ids: one DeleteVideos call, every id reported (exit 1 if any was not found). By filter: a dry run
    counts the videos, then (after --yes or a yes on the terminal) its token deletes exactly those."""
    flt = parse_filter(args.filter)
    if bool(args.video_ids) == (flt is not None):
        raise UsageError("give video ids or --filter KEY=VALUE, not both and not neither")
    if args.video_ids:
        ids = list(dict.fromkeys(args.video_ids))
        result = client.delete_videos(ids, dry_run=args.dry_run)
        missing = set(result.not_found)
        for vid in ids:
            if vid in missing:
                _report(args, vid, "not found", f"no video with id {vid}")
            else:
                _report(args, vid, "would delete" if args.dry_run else "deleted")
        return 1 if missing else 0
    counted = client.delete_videos(filter=flt, dry_run=True)
    if args.dry_run or counted.matched == 0:
        return _say_deleted(args, counted.matched, 0, dry_run=True)
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(f"{counted.matched} videos match; add --yes to delete them (or --dry-run to only count)")
        answer = input(f"delete {counted.matched} videos matching the filter? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return _say_deleted(args, counted.matched, 0, dry_run=True)
    done = client.delete_videos(filter=flt, confirm_token=counted.confirm_token)
    return _say_deleted(args, done.matched, done.deleted, dry_run=False)


def _say_deleted(args: argparse.Namespace, matched: int, deleted: int, *, dry_run: bool) -> int:
    if args.json:
        print_json({"matched": matched, "deleted": deleted, "dry_run": dry_run})
    elif dry_run:
        print(f"{matched} videos match the filter; nothing deleted")
    else:
        print(f"deleted {deleted} videos matching the filter")
    return 0


def cmd_export(client: Client, args: argparse.Namespace) -> int:
    bar = Progress(0, "export", unit="B")

    def progress(received: int, total: int) -> None:
        bar.total = total
        bar.update(received)

    if bar.enabled:
        bar.message("export: the server is writing the Parquet file ...")
    rows = client.export(args.out, parse_filter(args.filter), on_progress=progress if bar.enabled else None)
    bar.close()
    print_json({"path": str(args.out), "rows": rows}) if args.json else print(f"wrote {rows} frame rows to {args.out}")
    return 0
