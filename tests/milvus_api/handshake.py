"""Milvus's own client against milvus-like: the handshake and honest refusals.

Run by tests/tests/milvus_api.rs with the venv of tests/scripts/pymilvus.sh:
    python handshake.py URI EXPECTED_VERSION
Exits non-zero, saying what differed, on any mismatch.
"""

import sys

import grpc
from pymilvus import MilvusClient, connections, utility

uri, expected = sys.argv[1], sys.argv[2]


def check(what, got, want):
    if got != want:
        sys.exit(f"{what}: got {got!r}, want {want!r}")


# MilvusClient: Connect at construction, then GetVersion.
client = MilvusClient(uri=uri)
check("MilvusClient.get_server_version()", client.get_server_version(), expected)
detail = client.get_server_version(detail=True)
check("get_server_version(detail=True)['version']", detail["version"], expected)
check("deploy_mode", detail["deploy_mode"], "milvus-like")

# A method milvus-like does not serve yet is refused by name, not answered.
try:
    client.list_collections()
    sys.exit("list_collections() answered; it must be refused until it is served")
except grpc.RpcError as e:
    check("list_collections() status", e.code(), grpc.StatusCode.UNIMPLEMENTED)
    if "ShowCollections" not in e.details():
        sys.exit(f"the refusal does not name ShowCollections: {e.details()!r}")
client.close()

# The ORM API: connections + utility.
connections.connect(alias="orm", uri=uri)
check("utility.get_server_version()", utility.get_server_version(using="orm"), expected)
connections.disconnect("orm")
print("pymilvus handshake: ok")
