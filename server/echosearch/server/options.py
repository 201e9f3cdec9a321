"""Serve options declared once: a dataclass field carries its default, its `serve` flag, help and range.

Each concern keeps its options in a small frozen dataclass in a light module next to the code that uses
them (ModelOptions, EncoderOptions, MediaOptions, StorageOptions, Limits, NetworkOptions); `config.py`
composes them into ServerConfig and builds the `serve` flags from this metadata. A new option is one
field here and nowhere else. Standard library only: the client CLI imports this to build its parser.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any

_KEY = "echosearch_flag"


@dataclass(frozen=True)
class Flag:
    """How one option appears on the command line."""

    name: str  # the dataclass field
    flag: str  # "--max-upload-mb"
    help: str  # may say "{default}": replaced by the field's default as the flag reads it
    type: Callable[[str], Any] | None = None  # None: the default's type
    choices: Sequence[str] | None = None
    metavar: str | None = None
    unit: int = 1  # the flag counts in units of this many (MiB for --max-upload-mb); the field in ones
    minimum: float | None = None  # smallest allowed value (inclusive)
    above: float | None = None  # values must be greater than this
    switch: bool = False  # a bare flag that turns the option on (store_true)

    def to_flag(self, value: Any) -> Any:
        """A field value as the command line spells it."""
        if isinstance(value, bool) and not self.switch:
            return "on" if value else "off"
        if value is not None and self.unit != 1:
            return value // self.unit
        return value

    def from_flag(self, value: Any) -> Any:
        """A parsed command-line value as the field holds it."""
        if self.choices == ("on", "off"):
            return value == "on"
        if value is not None and self.unit != 1:
            return value * self.unit
        return value

    def check(self, value: Any, field: str) -> None:
        """ValueError naming the flag when `value` is out of range (None: the option's derived default)."""
        if value is None:
            return
        shown = self.to_flag(value)
        if self.minimum is not None and value < self.minimum * self.unit:
            raise ValueError(f"{self.flag} ({field}) must be >= {_show(self.minimum)}, not {_show(shown)}")
        if self.above is not None and value <= self.above * self.unit:
            raise ValueError(f"{self.flag} ({field}) must be > {_show(self.above)}, not {_show(shown)}")


def option(
    default: Any = MISSING,
    *,
    flag: str,
    help: str,
    default_factory: Any = MISSING,
    **how: Any,
) -> Any:
    """A dataclass field that is also a `serve` flag (see Flag for `how`: type, choices, minimum, ...)."""
    spec = {"flag": flag, "help": help, **how}
    if isinstance(default, bool) and not how.get("switch"):
        spec.setdefault("choices", ("on", "off"))
    return dataclasses.field(default=default, default_factory=default_factory, metadata={_KEY: spec})


def flags_of(cls: type) -> list[Flag]:
    """The flags of an option dataclass, in field order."""
    return [Flag(f.name, **f.metadata[_KEY]) for f in dataclasses.fields(cls) if _KEY in f.metadata]


def field_default(cls: type, name: str) -> Any:
    """The default of one field of an option dataclass."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]


def add_flags(parser: argparse._ActionsContainer, cls: type, dest_prefix: str = "") -> None:
    """Add `cls`'s flags to a parser or an argument group; each parses into `dest_prefix + field`."""
    for spec in flags_of(cls):
        default = spec.to_flag(field_default(cls, spec.name))
        text = spec.help.replace("{default}", _show(default))
        dest = dest_prefix + spec.name
        if spec.switch:
            parser.add_argument(spec.flag, dest=dest, action="store_true", help=text)
            continue
        kind = spec.type or (type(default) if default is not None and spec.choices is None else None)
        if isinstance(kind, type) and issubclass(kind, Path):
            kind = Path  # PosixPath -> Path
        metavar = spec.metavar or (None if spec.choices else spec.flag.lstrip("-").upper().replace("-", "_"))
        parser.add_argument(
            spec.flag, dest=dest, type=kind, default=default, choices=spec.choices, metavar=metavar, help=text
        )


def values_from_args(cls: type, args: argparse.Namespace, dest_prefix: str = "") -> dict[str, Any]:
    """The field values `add_flags` parsed, as `cls(**values)` takes them."""
    return {spec.name: spec.from_flag(getattr(args, dest_prefix + spec.name)) for spec in flags_of(cls)}


def check_ranges(options: Any) -> None:
    """ValueError naming the flag of the first option of `options` (a dataclass) that is out of range."""
    for spec in flags_of(type(options)):
        spec.check(getattr(options, spec.name), spec.name)


def _show(value: Any) -> str:
    """A default as help text shows it: 30 rather than 30.0."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
