"""docs/serving.md names every setting there is, so the reference cannot fall behind the code."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from ferry.engine.config import BatchingConfig, ModelConfig
from ferry.runtimes import RuntimeOptions
from ferry.settings import ServerSettings

DOC = (Path(__file__).resolve().parents[2] / "docs" / "serving.md").read_text()


@pytest.mark.parametrize("cls", [ServerSettings, ModelConfig, BatchingConfig, RuntimeOptions],
                         ids=lambda c: c.__name__)
def test_every_setting_has_a_row_in_docs_serving(cls: type[BaseModel]):
    forms = ("`{}`", "] {}`", "`[{}]")  # a key, a key of a table, a table
    missing = [name for name in cls.model_fields
               if not any(form.format(name) in DOC for form in forms)]
    assert missing == []
