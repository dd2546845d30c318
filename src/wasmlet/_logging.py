"""Logging set-up shared by the CLI and worker processes.

Human-readable lines on a terminal, one JSON object per line otherwise (for
log shippers). Records may carry ``app``, ``request_id`` and ``trace_id``
(passed with ``extra=``); both formats show them.
"""

from __future__ import annotations

import json
import logging
import sys
import time

__all__ = ["JsonFormatter", "configure_logging"]

_FIELDS = ("app", "request_id", "trace_id", "cause", "status")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "msg": record.getMessage(),
        }
        for field in _FIELDS:
            value = getattr(record, field, None)
            if value not in (None, ""):
                entry[field] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        tags = " ".join(f"{f}={getattr(record, f)}" for f in ("request_id", "trace_id") if getattr(record, f, None))
        return f"{line} [{tags}]" if tags else line


def configure_logging(level: str = "info", json_format: bool | None = None, app_log: str | None = None) -> None:
    """Log to stderr; JSON unless stderr is a terminal (or as ``json_format`` says).

    ``app_log``: a file that also receives every record tagged with an app, as
    JSON lines (rotated at 4 MiB), which ``wasmlet logs APP`` reads.
    """
    use_json = (not sys.stderr.isatty()) if json_format is None else json_format
    handler = logging.StreamHandler(sys.stderr)
    if use_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s[%(process)d] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    if app_log:
        from logging.handlers import RotatingFileHandler  # here: the supervisor keeps no app log (~4 ms)

        per_app = RotatingFileHandler(app_log, maxBytes=4 << 20, backupCount=1, encoding="utf-8")
        per_app.setFormatter(JsonFormatter())
        per_app.addFilter(lambda record: bool(getattr(record, "app", None)))
        root.addHandler(per_app)
    root.setLevel(level.upper())
    logging.getLogger("uvicorn.error").setLevel(max(logging.WARNING, root.level))
