"""The `evaluate` subcommand (its heavy imports happen only when it runs)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import grpc

from echosearch.client.cli_args import missing_extra
from echosearch.client.cli_examples import EXAMPLES
from echosearch.client.client import ApiError, Client
from echosearch.client.output import print_table
from echosearch.client.params import UsageError


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add `evaluate` to the command line."""
    p = sub.add_parser(
        "evaluate",
        parents=[common],
        help="measure a task against labels: metrics.json, plots, HTML",
        epilog=EXAMPLES["evaluate"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("task", help="registered task name (see `echosearch tasks`)")
    p.add_argument("--labels", type=Path, required=True, metavar="CSV", help="labels: a key column and a label column")
    p.add_argument(
        "--key",
        choices=("id", "sha256", "source", "study_id"),
        default="id",
        help="what the key column names: video_id (default), sha256, source_name, study_id",
    )
    p.add_argument("--label-column", help="the label column (default: label, value or y)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="report folder (created)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument(
        "--calibrate",
        metavar="NAME",
        help="save a site-calibrated copy of the task on the server as stored task NAME "
        "(binary: the F1-optimal threshold; regression: a linear recalibration a*x+b)",
    )
    p.add_argument("--replace", action="store_true", help="with --calibrate: replace a stored task of that name")
    p.add_argument(
        "--allow-negative-slope",
        action="store_true",
        help="with --calibrate: save a regression fit whose slope is negative (it inverts the task's ranking; "
        "refused by default)",
    )


def cmd_evaluate(client: Client, args: argparse.Namespace) -> int:
    try:
        from echosearch.client.evaluation.report import summary_rows, write_report
        from echosearch.client.evaluation.run import evaluate
    except ImportError as exc:
        raise missing_extra("eval", exc) from None
    if args.resamples < 1:
        raise UsageError("--resamples must be >= 1")
    ev = evaluate(
        client,
        args.task,
        args.labels,
        key=args.key,
        label_column=args.label_column,
        resamples=args.resamples,
        seed=args.seed,
        progress=lambda m: print(m, file=sys.stderr),
    )
    if (args.replace or args.allow_negative_slope) and not args.calibrate:
        raise UsageError("--replace and --allow-negative-slope go with --calibrate NAME")
    index = write_report(ev, args.out)
    if args.calibrate:
        from echosearch.client.evaluation.calibrate import calibrate

        try:
            stored = calibrate(
                client, ev, args.calibrate, replace=args.replace, allow_negative_slope=args.allow_negative_slope
            )
        except ApiError as exc:
            if exc.code == grpc.StatusCode.ALREADY_EXISTS:  # say which option the server's "ask to replace" is
                raise ApiError(exc.code, f"{exc.message} (evaluate --calibrate {args.calibrate} --replace)") from None
            raise
        saved = "replaced" if args.replace else "saved"
        print(f"{saved} stored task {stored.name!r} ({stored.description})", file=sys.stderr)
    if args.json:
        print(json.dumps(ev.metrics, allow_nan=False))
        return 0
    print(f"task {ev.task.name} ({ev.task.kind}), labels matched by {ev.key}")
    print_table(["metric", "value"], summary_rows(ev.metrics, escape=False))
    for note in ev.metrics.get("notes", []):
        print(f"note: {note}")
    print(f"report: {index}")
    return 0
