"""The gRPC door's fresh request ids: uuid4().hex's format, built without a UUID object."""

from __future__ import annotations

import uuid

from ferry.protocols.grpc.call import fresh_id


def test_fresh_id_is_a_version_4_uuid_in_hex() -> None:
    ids = {fresh_id() for _ in range(2000)}
    assert len(ids) == 2000  # random, not repeated
    for rid in ids:
        parsed = uuid.UUID(hex=rid)
        assert parsed.hex == rid and len(rid) == 32
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
