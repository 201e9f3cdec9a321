"""`echosearch search` and `similar`: videos matching a text, or like a stored video, as a table or JSON lines."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from echosearch.client.cli_args import filter_arg, k_arg, subcommand
from echosearch.client.client import Client
from echosearch.client.output import print_json, print_table
from echosearch.client.params import parse_filter
from echosearch.client.types import SearchResults


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """`search` and `similar`."""
    p = subcommand(sub, "search", "videos matching a text", [common])
    p.add_argument("text", help="what to look for, e.g. an EchoCLIP report phrase")
    k_arg(p)
    p.add_argument(
        "--aggregation",
        choices=("max", "mean"),
        default="max",
        help="max: best frame; mean: EchoCLIP binary score (default max)",
    )
    p.add_argument("--frames", type=int, default=1, help="best frames shown per video (default 1)")
    filter_arg(p)
    explain_arg(p)

    p = subcommand(sub, "similar", "videos similar to a stored video", [common])
    p.add_argument("video_id", type=int, help="a stored video's id")
    k_arg(p)
    p.add_argument("--aggregation", choices=("max", "mean"), default="mean", help="(default mean)")
    filter_arg(p)
    explain_arg(p)


def explain_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--explain",
        action="store_true",
        help="also say how the server searched (which index, exact or approximate, how many candidates)",
    )


def _print_results(results: SearchResults, args: argparse.Namespace) -> None:
    if args.explain:  # on stderr, so stdout stays the results (a table or JSON lines) for scripts
        for line in results.plan:
            print(f"plan: {line}", file=sys.stderr)
    if args.json:
        for r in results:
            print_json(r)
        return
    rows = []
    for r in results:
        best = ", ".join(f"#{h.frame_index}@{h.timestamp:.2f}s" for h in r.best_frames)
        rows.append(
            [r.video.video_id, r.score, r.video.source_name, r.video.metadata.study_id, r.video.metadata.view, best]
        )
    print_table(["id", "score", "source", "study", "view", "best frames"], rows)


def cmd_search(client: Client, args: argparse.Namespace) -> int:
    _print_results(
        client.search_by_text(
            args.text,
            k=args.k,
            aggregation=args.aggregation,
            filter=parse_filter(args.filter),
            frames_per_video=args.frames,
        ),
        args,
    )
    return 0


def cmd_similar(client: Client, args: argparse.Namespace) -> int:
    _print_results(
        client.search_by_video(args.video_id, k=args.k, aggregation=args.aggregation, filter=parse_filter(args.filter)),
        args,
    )
    return 0
