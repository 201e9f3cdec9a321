"""`serve --log-format json`: each log record as one JSON object (standard library only; the CLI sets it up before
the server stack is imported)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, and the call's rpc_method,
    request_id, rpc_code and duration_ms when the record has them; an exception's traceback as `exc`."""

    FIELDS = ("rpc_method", "request_id", "rpc_code", "duration_ms")

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in self.FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)
