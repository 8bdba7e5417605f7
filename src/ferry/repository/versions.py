"""Version policies: which of a model's versions to serve (as Triton's ``version_policy``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from ferry.errors import InputError
from ferry.repository.layout import parse_version

__all__ = ["VersionPolicy"]


@dataclass(frozen=True)
class VersionPolicy:
    """Select versions: the latest one, the latest N, all, or specific numbers.

    Written as text in flags and config: ``latest``, ``latest:2``, ``all``, ``1,3``.
    """

    kind: Literal["latest", "all", "specific"] = "latest"
    count: int = 1
    versions: tuple[int, ...] = ()

    @classmethod
    def parse(cls, text: str) -> VersionPolicy:
        """Parse a policy written as text.

        Raises:
            InputError: the text is none of the forms above.
        """
        text = text.strip()
        if text == "all":
            return cls("all")
        if text == "latest":
            return cls("latest", 1)
        if text.startswith("latest:"):
            count = text.partition(":")[2]
            if not count.isdigit() or int(count) < 1:
                raise InputError(f"invalid version policy {text!r}: latest:N needs N >= 1")
            return cls("latest", int(count))
        try:
            chosen = tuple(sorted({parse_version(v) for v in text.split(",") if v.strip()}))
        except InputError:
            chosen = ()
        if not chosen:
            raise InputError(
                f"invalid version policy {text!r}: use 'latest', 'latest:N', 'all' "
                "or a list of versions such as '1,3'"
            )
        return cls("specific", versions=chosen)

    def select(self, available: Iterable[int]) -> list[int]:
        """Return the chosen versions, ascending, among those ``available``."""
        have = sorted(set(available))
        if self.kind == "all":
            return have
        if self.kind == "latest":
            return have[-self.count :]
        return [v for v in self.versions if v in have]

    def __str__(self) -> str:
        if self.kind == "specific":
            return ",".join(str(v) for v in self.versions)
        if self.kind == "latest" and self.count > 1:
            return f"latest:{self.count}"
        return self.kind
