"""Parsing of the CLI's `key=value` options into metadata, filters and custom tasks."""

from __future__ import annotations

from datetime import UTC, datetime

from echosearch.client.types import CustomTask, VideoFilter, VideoMetadata

META_FIELDS = ("study_id", "patient_id", "view", "acquisition_time")
FILTER_KEYS = (
    "id",
    "study_id",
    "patient_id",
    "view",
    "acquired_after",
    "acquired_before",
    "ingested_after",
    "ingested_before",
)


class UsageError(ValueError):
    """A command-line value the user must fix (printed as one line, exit code 2)."""


def split_pair(text: str, option: str) -> tuple[str, str]:
    """ "key=value" -> (key, value); the key must be non-empty."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UsageError(f"{option} takes key=value, not {text!r}")
    return key, value


def parse_time(text: str, what: str) -> datetime:
    """ISO 8601 date or date-time; a naive value is taken as UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{what}: {text!r} is not an ISO 8601 time (e.g. 2024-05-01 or 2024-05-01T13:45:00Z)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse_metadata(pairs: list[str]) -> VideoMetadata:
    """--meta study_id=.. patient_id=.. view=.. acquisition_time=..; any other key becomes a tag."""
    fields: dict[str, object] = {}
    tags: dict[str, str] = {}
    for text in pairs:
        key, value = split_pair(text, "--meta")
        if key == "acquisition_time":
            fields[key] = parse_time(value, "--meta acquisition_time")
        elif key in META_FIELDS:
            fields[key] = value
        else:
            tags[key] = value
    return VideoMetadata(tags=tags, **fields)  # type: ignore[arg-type]


TAG_PREFIX = "tag."


def parse_filter(pairs: list[str], option: str = "--filter") -> VideoFilter | None:
    """--filter key=value, repeatable: a key given twice matches either value; tags are `tag.KEY=VALUE`.

    A bare key that is not one of FILTER_KEYS is refused (UsageError listing the known keys): a misspelled
    `veiw=A4C` would otherwise silently match nothing. `option` names the option in error messages.
    """
    if not pairs:
        return None
    sets: dict[str, list[str]] = {"id": [], "study_id": [], "patient_id": [], "view": []}
    times: dict[str, datetime] = {}
    tags: dict[str, str] = {}
    for text in pairs:
        key, value = split_pair(text, option)
        if key in sets:
            sets[key].append(value)
        elif key in FILTER_KEYS:
            times[key] = parse_time(value, f"{option} {key}")
        elif key.startswith(TAG_PREFIX) and len(key) > len(TAG_PREFIX):
            tags[key[len(TAG_PREFIX) :]] = value
        else:
            raise UsageError(
                f"{option} {key}={value}: unknown key {key!r}; the keys are {', '.join(FILTER_KEYS)}, "
                f"and tags are matched with tag.KEY=VALUE (e.g. tag.{key.removeprefix(TAG_PREFIX) or 'site'}={value})"
            )
    try:
        ids = tuple(int(v) for v in sets["id"])
    except ValueError:
        raise UsageError(f"{option} id takes integer video ids, not {sets['id']}") from None
    return VideoFilter(
        video_ids=ids,
        study_ids=tuple(sets["study_id"]),
        patient_ids=tuple(sets["patient_id"]),
        views=tuple(sets["view"]),
        tags=tags,
        **times,  # type: ignore[arg-type]
    )


def parse_custom_task(
    name: str,
    kind: str | None,
    prompts: list[str],
    value_range: str | None,
    values: list[float] | None,
    labels: list[str],
    threshold: float | None,
) -> CustomTask:
    """A CustomTask from `score --prompt ... --kind ...` options."""
    if not kind:
        raise UsageError("a custom task needs --kind binary|regression|categorical")
    rng = None
    if value_range:
        parts = value_range.split(":")
        try:
            numbers = [float(p) for p in parts]
        except ValueError:
            numbers = []
        if len(numbers) not in (2, 3):
            raise UsageError(f"--range takes FROM:TO[:STEP], e.g. 0:100:1, not {value_range!r}")
        rng = (numbers[0], numbers[1], numbers[2] if len(numbers) == 3 else 1.0)
    label_map: dict[float, str] = {}
    for text in labels:
        key, label = split_pair(text, "--label")
        try:
            label_map[float(key)] = label
        except ValueError:
            raise UsageError(f"--label takes VALUE=NAME with a numeric value, not {text!r}") from None
    return CustomTask(
        name=name,
        kind=kind,
        prompts=tuple(prompts),
        value_range=rng,
        values=tuple(values or ()),
        labels=label_map,
        threshold=threshold,
    )
