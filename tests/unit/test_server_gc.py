"""The server exempts its startup objects from full garbage collections (server.py)."""

from __future__ import annotations

import gc

from ferry import server


def test_startup_objects_are_frozen_and_new_ones_still_collected() -> None:
    try:
        server._freeze_startup_objects()
        frozen = gc.get_freeze_count()
        assert frozen > 1000  # this test process's modules, at least

        class Node:
            pass

        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle made after the freeze
        del a, b
        assert gc.collect() >= 2  # still found and freed
        # Collecting does not freeze anything new (frozen objects may still be freed by
        # reference counting, so the count can only go down).
        assert gc.get_freeze_count() <= frozen
    finally:
        gc.unfreeze()
