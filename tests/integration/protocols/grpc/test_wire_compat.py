"""ferry's inference.proto is wire-compatible with Triton's and KServe's (issue 4).

Each client package ships the descriptor it was generated from; this compares them field by
field (number, type, cardinality, message type) with ferry's. The third-party packages are
read in a subprocess because both register the same ``inference.*`` names in protobuf's
default pool and cannot share a process with each other.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from ferry.protocols.grpc._generated import inference_pb2

_DUMP = textwrap.dedent(
    """
    import json, sys

    def dump(file):
        messages = {}
        def walk(message):
            if message.GetOptions().map_entry:
                key, value = message.fields_by_name["key"], message.fields_by_name["value"]
                messages[message.full_name] = {"map": [key.type, value.type,
                    value.message_type.full_name if value.message_type else ""]}
                return
            messages[message.full_name] = {
                f.name: [f.number, f.type, f.is_repeated,
                         f.message_type.full_name if f.message_type else ""]
                for f in message.fields
            }
            for nested in message.nested_types:
                walk(nested)
        for message in file.message_types_by_name.values():
            walk(message)
        service = file.services_by_name["GRPCInferenceService"]
        methods = {m.name: [m.input_type.full_name, m.output_type.full_name]
                   for m in service.methods}
        return {"package": file.package, "service": service.full_name,
                "messages": messages, "methods": methods}
    """
)


def _theirs(module: str) -> dict[str, Any]:
    code = _DUMP + f"\nimport {module} as m\nprint(json.dumps(dump(m.DESCRIPTOR)))\n"
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", code],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        pytest.fail(f"could not read {module}: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def _ours() -> dict[str, Any]:
    scope: dict[str, Any] = {}
    exec(_DUMP, scope)
    return json.loads(json.dumps(scope["dump"](inference_pb2.DESCRIPTOR)))


@pytest.fixture(scope="module")
def ours() -> dict[str, Any]:
    return _ours()


def test_triton_agrees_on_every_message_field_and_rpc_ferry_declares(ours) -> None:
    theirs = _theirs("tritonclient.grpc.service_pb2")
    assert (ours["package"], ours["service"]) == (theirs["package"], theirs["service"])
    for rpc, types in ours["methods"].items():
        assert theirs["methods"].get(rpc) == types, rpc
    # Triton's repository responses are empty; ferry adds KServe's fields (ignored by Triton).
    kserve_extras = {
        "inference.RepositoryModelLoadResponse", "inference.RepositoryModelUnloadResponse",
    }
    for name, fields in ours["messages"].items():
        assert name in theirs["messages"], f"{name} is not in Triton's proto"
        if name in kserve_extras:
            assert theirs["messages"][name] == {}, name
            continue
        assert fields == theirs["messages"][name], name


def test_kserve_agrees_except_its_older_repository_messages(ours) -> None:
    theirs = _theirs("kserve.protocol.grpc.grpc_predict_v2_pb2")
    assert (ours["package"], ours["service"]) == (theirs["package"], theirs["service"])
    for rpc, types in theirs["methods"].items():
        assert ours["methods"].get(rpc) == types, rpc
    # KServe's load/unload requests put model_name at 1, where Triton (whose layout ferry
    # follows) has repository_name; the servicer reads a name there when model_name is empty.
    differing = {"inference.RepositoryModelLoadRequest", "inference.RepositoryModelUnloadRequest"}
    for name, fields in theirs["messages"].items():
        assert name in ours["messages"], f"{name} is missing from ferry's proto"
        if name in differing:
            assert ours["messages"][name]["repository_name"][:2] == fields["model_name"][:2]
            continue
        for field, spec in fields.items():
            assert ours["messages"][name].get(field) == spec, f"{name}.{field}"
