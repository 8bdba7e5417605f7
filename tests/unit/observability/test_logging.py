"""JSON log lines: one object per line, carrying the request id of the request being served."""

from __future__ import annotations

import json
import logging

from ferry.observability.logging import JsonFormatter, request_id


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("ferry.test", logging.WARNING, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_a_line_is_one_json_object_with_time_level_logger_and_message():
    line = JsonFormatter().format(_record("loaded %s in %.1f s", "mlp:1", 0.5))
    entry = json.loads(line)
    assert "\n" not in line
    assert entry["level"] == "warning" and entry["logger"] == "ferry.test"
    assert entry["message"] == "loaded mlp:1 in 0.5 s"
    assert entry["time"].endswith("Z") and "T" in entry["time"]
    assert "request_id" not in entry  # outside a request


def test_the_request_id_of_the_current_request_and_extras_are_logged():
    token = request_id.set("req-42")
    try:
        entry = json.loads(JsonFormatter().format(_record("refused", status=429, model="mlp")))
    finally:
        request_id.reset(token)
    assert entry["request_id"] == "req-42"
    assert entry["status"] == 429 and entry["model"] == "mlp"


def test_an_exception_is_kept_in_the_line():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = _record("failed")
        record.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in entry["exception"]
