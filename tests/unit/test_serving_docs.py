"""docs/serving.md names every setting there is, so the reference cannot fall behind the code."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from ferry.engine.config import BatchingConfig, BreakerConfig, ModelConfig
from ferry.runtimes import RuntimeOptions
from ferry.settings import SecuritySettings, ServerSettings

DOC = (Path(__file__).resolve().parents[2] / "docs" / "serving.md").read_text()


@pytest.mark.parametrize("cls", [ServerSettings, SecuritySettings, ModelConfig, BatchingConfig,
                                 BreakerConfig, RuntimeOptions],
                         ids=lambda c: c.__name__)
def test_every_setting_has_a_row_in_docs_serving(cls: type[BaseModel]):
    forms = ("`{}`", "] {}`", "`[{}]")  # a key, a key of a table, a table
    missing = [name for name in cls.model_fields
               if not any(form.format(name) in DOC for form in forms)]
    assert missing == []


_COUNTS = ("max_headers", "max_pipelined", "max_connections")


def _shown(name: str, value: float) -> str:
    """How the limits table writes a default: sizes in KiB, seconds with "s", counts bare."""
    if isinstance(value, float):
        return f"{value:g} s"
    return f"{value >> 10} KiB" if value >= 1024 and name not in _COUNTS else str(value)


def test_every_http_limit_default_is_in_the_limits_table():
    from dataclasses import fields

    from ferry.protocols.rest.limits import HttpLimits

    table = DOC[DOC.index("| limit (`protocols/rest/limits.py`"):]
    rows = table[:table.index("\n\n")].splitlines()
    missing = [f.name for f in fields(HttpLimits)
               if not any(f"| {_shown(f.name, f.default)} |" in row for row in rows)]
    assert missing == []
