"""Milvus's own client against milvus-like: the handshake, reading collections
and honest refusals.

Run by tests/tests/milvus_api.rs with the venv of tests/scripts/pymilvus.sh:
    python handshake.py URI EXPECTED_VERSION COLLECTION DIM
Exits non-zero, saying what differed, on any mismatch.
"""

import sys

import grpc
from pymilvus import DataType, MilvusClient, MilvusException, connections, utility

uri, expected, collection, dim = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])


def check(what, got, want):
    if got != want:
        sys.exit(f"{what}: got {got!r}, want {want!r}")


# MilvusClient: Connect at construction, then GetVersion.
client = MilvusClient(uri=uri)
check("MilvusClient.get_server_version()", client.get_server_version(), expected)
detail = client.get_server_version(detail=True)
check("get_server_version(detail=True)['version']", detail["version"], expected)
check("deploy_mode", detail["deploy_mode"], "milvus-like")

# Reading collections: the one the test made through milvus-like's own API.
check("list_collections()", client.list_collections(), [collection])
check("has_collection(made)", client.has_collection(collection), True)
check("has_collection(missing)", client.has_collection("nothing_here"), False)
described = client.describe_collection(collection)
check("describe: name", described["collection_name"], collection)
fields = {f["name"]: f for f in described["fields"]}
check("describe: fields", sorted(fields), ["id", "vec"])
check("describe: id is the primary key", fields["id"].get("is_primary"), True)
check("describe: id type", fields["id"]["type"], DataType.INT64)
check("describe: vector type", fields["vec"]["type"], DataType.FLOAT_VECTOR)
check("describe: vector dim", fields["vec"]["params"].get("dim"), dim)
try:
    client.describe_collection("nothing_here")
    sys.exit("describe_collection of a missing collection answered")
except MilvusException as e:
    check("describe missing: code", e.code, 100)
    if "nothing_here" not in e.message:
        sys.exit(f"the error does not name the collection: {e.message!r}")

# A method milvus-like does not serve is refused by name, not answered.
try:
    client.create_alias(collection, "another_name")
    sys.exit("create_alias() answered; it must be refused")
except grpc.RpcError as e:
    check("create_alias() status", e.code(), grpc.StatusCode.UNIMPLEMENTED)
    if "CreateAlias" not in e.details():
        sys.exit(f"the refusal does not name CreateAlias: {e.details()!r}")

# Dropping: the collection goes; a missing one is dropped already (as in Milvus).
client.drop_collection(collection)
check("has_collection after drop", client.has_collection(collection), False)
check("list_collections() after drop", client.list_collections(), [])
client.drop_collection(collection)
client.close()

# The ORM API: connections + utility.
connections.connect(alias="orm", uri=uri)
check("utility.get_server_version()", utility.get_server_version(using="orm"), expected)
connections.disconnect("orm")
print("pymilvus handshake: ok")
