"""JSON logs, one object per line, each with the request id of the request being served.

Adapters set :data:`request_id` (a context variable) when a request arrives; every log
record written while that request is handled carries it, without threading it through
every call. Log shippers (Loki, Elasticsearch, CloudWatch) parse one JSON object a line.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any, Literal

__all__ = ["FIELD_MAX", "JsonFormatter", "LineBudget", "TextFormatter", "clip",
           "configure_logging", "request_id"]

#: The most characters of one client-supplied string (a model name, a path, a header value,
#: an error detail) that a log line carries: a client must not write more log than it sends.
FIELD_MAX = 200


def clip(text: str, limit: int = FIELD_MAX) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...({len(text) - limit} more)"

#: The id of the request being handled in this task (empty outside a request).
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("ferry_request_id", default="")


class LineBudget:
    """At most ``lines`` log lines a ``seconds`` window from one source; the rest counted.

    Refusals are logged one line per request, and clients decide how many requests there
    are: under overload (thousands of 429s a second) writing each line cost more than
    answering the refusal. Past the budget a line is only counted, and the first line of
    the next window says how many were left out. Checking costs a clock read.
    """

    __slots__ = ("_dropped", "_lines", "_logger", "_seconds", "_used", "_what", "_window")

    def __init__(self, logger: logging.Logger, what: str, *, lines: int = 20,
                 seconds: float = 1.0) -> None:
        self._logger = logger
        self._what = what
        self._lines = lines
        self._seconds = seconds
        self._window = 0.0
        self._used = 0
        self._dropped = 0

    def allow(self) -> bool:
        """Whether this line may be written (False: it was counted instead)."""
        now = time.monotonic()
        if now >= self._window:
            if self._dropped:
                # About other requests than the one being handled: without its id.
                token = request_id.set("")
                try:
                    self._logger.warning(
                        "%d more %s were not logged (at most %d lines in %g s)",
                        self._dropped, self._what, self._lines, self._seconds,
                        extra={"not_logged": self._dropped})
                finally:
                    request_id.reset(token)
            self._window = now + self._seconds
            self._used = self._dropped = 0
        if self._used < self._lines:
            self._used += 1
            return True
        self._dropped += 1
        return False


# Attributes every LogRecord has; anything else was passed with ``extra=`` and is logged.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime",
    "color_message",  # uvicorn's copy of the message with terminal colours
}


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object: time, level, logger, message, request id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        """One JSON line for ``record``."""
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = request_id.get()
        if rid:
            entry["request_id"] = rid
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """Plain-text lines; a line written while a request is handled ends with its id."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The line for ``record``, with ``[request <id>]`` when a request is handled."""
        line = super().format(record)
        rid = request_id.get()
        return f"{line} [request {rid}]" if rid else line


def configure_logging(fmt: Literal["json", "text"] = "json", level: str = "info") -> None:
    """Send ferry's and the servers' logs to stderr, as JSON lines or plain text."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
