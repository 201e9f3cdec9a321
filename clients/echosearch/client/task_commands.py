"""`echosearch score`, `tasks` and `delete-task`: a task over stored videos, the tasks there are, removing a stored one.

Scores come as a table a person can read or as JSON lines.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from echosearch.client.cli_args import filter_arg, positive_int, subcommand
from echosearch.client.cli_examples import EXAMPLES
from echosearch.client.client import Client
from echosearch.client.output import Progress, fmt_measure, fmt_percentile, fmt_threshold, print_json, print_table
from echosearch.client.params import UsageError, parse_custom_task, parse_filter
from echosearch.client.types import CustomTask, Task, VideoFilter, VideoScore

DESCRIPTION_WIDTH = 60


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """`score` and `tasks`."""
    p = subcommand(sub, "score", "score a task (or custom prompts) over stored videos", [common])
    p.add_argument("task", nargs="?", help="registered task name (see `echosearch tasks`); omit with --prompt")
    p.add_argument("--ids", type=int, nargs="+", help="only these video ids (unknown ids are reported, exit 1)")
    p.add_argument(
        "--top",
        type=positive_int,
        metavar="K",
        help="only the K highest: binary by score, regression and categorical by value",
    )
    p.add_argument("--bottom", type=positive_int, metavar="K", help="only the K lowest (e.g. the lowest EF)")
    p.add_argument("--prompt", action="append", default=[], help="custom task prompt (repeat); needs --kind")
    p.add_argument(
        "--kind", choices=("binary", "regression", "categorical"), help="the custom task's kind (with --prompt)"
    )
    p.add_argument("--range", dest="value_range", metavar="FROM:TO[:STEP]", help="regression values for <#>")
    p.add_argument("--value", type=float, action="append", help="categorical: the value of each --prompt, in order")
    p.add_argument("--label", action="append", default=[], metavar="VALUE=NAME", help="categorical: name of a value")
    p.add_argument("--threshold", type=float, help="binary: decision threshold")
    p.add_argument("--name", default="custom", help="custom task name")
    filter_arg(p)

    subcommand(sub, "tasks", "list registered tasks (and plugins the server skipped)", [common])


def add_delete_task_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """`delete-task` (listed after `evaluate`, whose --calibrate makes the tasks it deletes)."""
    p = sub.add_parser(
        "delete-task",
        parents=[common],
        help="delete a stored task (e.g. one saved by --calibrate)",
        epilog=EXAMPLES["delete-task"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name")


def candidate_count(task: Task | CustomTask) -> int:
    """How many texts the server embeds for a task (a regression template once per value)."""
    if task.kind == "regression" and task.value_range is not None:
        start, stop, step = task.value_range
        values = math.floor((stop - start) / step + 1e-9) + 1 if step > 0 and stop >= start else 0
        return len(task.prompts) * values
    return len(task.prompts)


def columns(task: Task | None) -> tuple[list[str], Any]:
    """The headers and a row builder that show only what applies to the task's kind, readably: a binary score
    with its percentile among the selection (and decision), a regression value with its unit, a category by
    name."""
    kind = task.kind if task is not None else ""
    place = "among the selection"
    if kind == "binary":
        if task is not None and task.threshold is not None:
            return ["id", "score", place, f"decision (score > {fmt_threshold(task.threshold)})", "source"], (
                lambda s, n: [s.video_id, s.score, fmt_percentile(s.percentile, s.percentile_of), s.decision, n]
            )
        return ["id", "score", place, "source"], lambda s, n: [
            s.video_id, s.score, fmt_percentile(s.percentile, s.percentile_of), n,
        ]  # fmt: skip
    if kind == "regression":
        unit = task.unit if task is not None else ""
        return ["id", "value", "source"], lambda s, n: [s.video_id, fmt_measure(s.value, unit), n]
    if kind == "categorical":
        return ["id", "category", "source"], lambda s, n: [s.video_id, s.label, n]
    return ["id", "score", "value", "label", "decision", "source"], lambda s, n: [
        s.video_id, s.score, s.value, s.label, s.decision, n,
    ]  # fmt: skip


def describe(task: Task) -> str:
    """The lines above the table: the task, its kind, and what its numbers are."""
    if task.kind == "binary":
        head = f"task {task.name} (binary): score = mean cosine similarity of the frames with the prompts"
        if task.threshold is not None:
            return f"{head}; decision: score > {fmt_threshold(task.threshold)}"
        return (
            f"{head}; no threshold, so no decision: calibrate one on labelled videos with "
            f"`echosearch evaluate {task.name} --labels LABELS.csv --calibrate NAME`"
        )
    if task.kind == "regression":
        unit = f" in {task.unit}" if task.unit else ""
        return f"task {task.name} (regression): the value{unit} whose prompts the frames match best"
    if task.kind == "categorical":
        names = ", ".join(task.labels.values())
        return f"task {task.name} (categorical): the category whose prompts the frames match best ({names})"
    return f"task {task.name} ({task.kind})"


def _registered(client: Client, name: str) -> Task | None:
    return next((t for t in client.list_tasks() if t.name == name), None)


def _known_ids(client: Client, ids: list[int]) -> tuple[list[int], list[int]]:
    """(stored, not stored) among `ids`, in the order given."""
    stored = {v.video_id for v in client.iter_videos(VideoFilter(video_ids=tuple(ids)))}
    return [i for i in ids if i in stored], [i for i in ids if i not in stored]


def _names(client: Client, scores: list[VideoScore]) -> dict[int, str]:
    if not scores:
        return {}
    videos = client.iter_videos(VideoFilter(video_ids=tuple(s.video_id for s in scores)))
    return {v.video_id: v.source_name for v in videos}


def cmd_score(client: Client, args: argparse.Namespace) -> int:
    if args.prompt and args.task:
        raise UsageError("give a task name or --prompt options, not both")
    if args.top and args.bottom:
        raise UsageError("give --top or --bottom, not both")
    flt = parse_filter(args.filter)
    if args.prompt:
        task: Any = parse_custom_task(
            args.name, args.kind, args.prompt, args.value_range, args.value, args.label, args.threshold
        )
        known_task: Task | CustomTask | None = task
    elif args.task:
        task = args.task
        known_task = None
    else:
        raise UsageError("say which task: a name from `echosearch tasks`, or --prompt ... --kind ...")

    ids, missing = (args.ids, []) if not args.ids else _known_ids(client, list(dict.fromkeys(args.ids)))
    for vid in missing:
        print(f"error: video {vid}: not found (not scored)", file=sys.stderr)
    if args.ids and not ids:
        return 1

    bar = Progress(0, "score")
    if bar.enabled:
        if known_task is None:
            known_task = _registered(client, task)  # an unknown name fails below with the server's message
        if args.ids:
            bar.total = len(ids)
        elif not (args.top or args.bottom):
            bar.total = client.list_videos(flt, page_size=1).total
        if known_task is not None:
            n = candidate_count(known_task)
            bar.message(f"scoring {known_task.name}: encoding up to {n} prompts on first use (cached after) ...")
        if args.top or args.bottom:
            bar.message("ranking the selection; the results come at the end ...")
            bar.enabled = False  # the k results arrive at once: a count of them is no progress
        bar.start()

    stream = client.score(task, video_ids=ids or None, filter=flt, top_k=args.top, bottom_k=args.bottom)
    scores: list[VideoScore] = []
    for batch in stream.batches():
        if args.json:
            for s in batch:
                print_json(s)
        else:
            scores.extend(batch)
        bar.advance(len(batch))
    bar.close()
    if not args.json:
        headers, row = columns(stream.task)
        if stream.task is not None:
            print(describe(stream.task), file=sys.stderr)
        names: dict[int, str] = {}
        for start in range(0, len(scores), 1000):
            names.update(_names(client, scores[start : start + 1000]))
        print_table(headers, [row(s, names.get(s.video_id)) for s in scores])
    return 1 if missing else 0


def cmd_tasks(client: Client, args: argparse.Namespace) -> int:
    tasks, skipped = client.list_tasks_and_problems()
    if args.json:
        for t in tasks:
            print_json(t)
        for p in skipped:
            print_json({"skipped": p})
        return 0
    rows = []
    for t in tasks:
        answer = f"threshold {fmt_threshold(t.threshold)}" if t.threshold is not None else ""
        if t.value_range:
            answer = "values {:g}..{:g} step {:g}".format(*t.value_range) + (f" {t.unit}" if t.unit else "")
        elif t.labels:
            answer = ", ".join(t.labels.values())
        rows.append([t.name, t.kind, len(t.prompts), answer, t.source, _truncate(t.description, DESCRIPTION_WIDTH)])
    print_table(["name", "kind", "prompts", "answer", "source", "description"], rows)
    for p in skipped:
        what = f"task {p.task!r} of plugin {p.plugin!r}" if p.task else f"plugin {p.plugin!r}"
        where = f" ({p.distribution})" if p.distribution else ""
        print(f"skipped: {what}{where}: {p.reason}", file=sys.stderr)
    return 0


def _truncate(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


def cmd_delete_task(client: Client, args: argparse.Namespace) -> int:
    client.delete_task(args.name)
    print(f"deleted stored task {args.name!r}", file=sys.stderr)
    return 0
