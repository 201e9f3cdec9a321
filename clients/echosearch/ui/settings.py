"""What the web UI serves and to whom: the address it binds, the Host names it answers to, its upload cap.

Read by the guard (ui/guard.py) on every request; `echosearch ui`'s flags fill it. Light: no Starlette here,
so the CLI can read the defaults for its --help.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

DEFAULT_MAX_UPLOAD_BYTES = 64 << 20  # a labels CSV of a million rows is about 20 MB
LOCAL_NAMES = ("localhost", "127.0.0.1", "[::1]")  # names of this machine a browser may use for the UI


def split_host(value: str) -> tuple[str, int | None] | None:
    """A Host header (or --allowed-host) as (lower-case name, port or None); None when it is malformed.

    IPv6 addresses keep their brackets ("[::1]"), as browsers send them.
    """
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[: end + 1], value[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:] if rest else None
    else:
        name, sep, port_text = value.partition(":")
        port_text = port_text if sep else None
    if not name or name == "[]":
        return None
    if port_text is None:
        return name, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None
    return name, int(port_text)


def _bracketed(host: str) -> str:
    """A bind address as a browser writes it in Host: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


@dataclass(frozen=True)
class UISettings:
    """host/port: where the UI listens (port None: any, for an app built before its socket is bound).

    allowed_hosts: more NAME or NAME:PORT values the Host header may carry (--allowed-host).
    max_upload_bytes: the largest request body (the evaluation form's labels CSV) the UI reads.
    """

    host: str = "127.0.0.1"
    port: int | None = None
    allowed_hosts: tuple[str, ...] = ()
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES

    def __post_init__(self) -> None:
        bad = [h for h in self.allowed_hosts if split_host(h) is None]
        if bad:
            raise ValueError(f"--allowed-host takes NAME or NAME:PORT, not {bad[0]!r}")
        if self.max_upload_bytes < 1:
            raise ValueError("--max-upload-bytes must be 1 or more")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> UISettings:
        """The settings `echosearch ui`'s flags ask for."""
        return cls(args.host, args.port, tuple(args.allowed_host), args.max_upload_bytes)

    def host_allowed(self, header: str) -> bool:
        """Whether a request's Host header names this UI: one of its names, with its own port or none.

        A page on attacker.example that rebinds its name to this machine still sends `Host: attacker.example`,
        so checking the name is what stops DNS rebinding. A Host without a port is a proxy's or port 80's.
        """
        parsed = split_host(header)
        if parsed is None:
            return False
        name, port = parsed
        names = {_bracketed(self.host.lower()), *LOCAL_NAMES}
        exact = set()
        for entry in self.allowed_hosts:
            allowed_name, allowed_port = split_host(entry) or ("", None)
            if allowed_port is None:
                names.add(allowed_name)
            else:
                exact.add((allowed_name, allowed_port))
        if (name, port) in exact:
            return True
        return name in names and (port is None or self.port is None or port == self.port)
