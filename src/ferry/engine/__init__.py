"""The serving engine: model table, validation, dynamic batching, admission, hot swap.

Adapters (REST, gRPC) use only the :class:`Engine` facade; the rest is its machinery.
"""

from ferry.engine.config import BatchingConfig, ModelConfig, read_model_config
from ferry.engine.engine import EXTENSIONS, Engine, parse_selection

__all__ = [
    "EXTENSIONS",
    "BatchingConfig",
    "Engine",
    "ModelConfig",
    "parse_selection",
    "read_model_config",
]
