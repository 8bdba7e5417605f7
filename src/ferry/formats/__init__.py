"""Source formats: one importer per format, detection, parity, and the import pipeline."""

from ferry.formats.base import (
    Converted,
    Importer,
    ImportOptions,
    NullProgress,
    Progress,
    get_importer,
    importer_names,
    iter_importers,
    register_importer,
)
from ferry.formats.detect import detect_format
from ferry.formats.pipeline import import_model

__all__ = [
    "Converted",
    "ImportOptions",
    "Importer",
    "NullProgress",
    "Progress",
    "detect_format",
    "get_importer",
    "import_model",
    "importer_names",
    "iter_importers",
    "register_importer",
]
