"""Milvus's quick start, as a Milvus user writes it with pymilvus, against
milvus-like: MilvusClient, then the ORM API (connections, Collection,
FieldSchema, CollectionSchema). Every answer is checked against what was
inserted: counts, ids, and distances against an exact computation.

Run by tests/tests/milvus_api.rs with the venv of tests/scripts/pymilvus.sh:
    python quickstart.py URI
Prints "pymilvus quick start: ok" at the end; exits non-zero, saying what
differed, on any mismatch.
"""

import math
import random
import sys
import time
import warnings

from pymilvus import (
    Collection,
    CollectionSchema,
    DataType,
    FieldSchema,
    MilvusClient,
    MilvusException,
    connections,
    utility,
)

# The ORM half is deprecated in pymilvus 3.0 (still what many users run).
warnings.filterwarnings("ignore", category=FutureWarning)
uri = sys.argv[1]
DIM = 16
ROWS = 3000
rng = random.Random(7)


def check(what, got, want):
    if got != want:
        sys.exit(f"{what}: got {got!r}, want {want!r}")


def refused(what, call, words, code=None):
    """`call` raises a MilvusException whose message holds every one of `words`."""
    try:
        call()
    except MilvusException as e:
        for w in words:
            if w not in e.message:
                sys.exit(f"{what}: the error does not say {w!r}: {e.message!r}")
        if code is not None:
            check(f"{what}: code", e.code, code)
        return
    sys.exit(f"{what}: answered, but must be refused")


def vectors(n):
    return [[rng.uniform(-1, 1) for _ in range(DIM)] for _ in range(n)]


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def l2(a, b):
    return sum((x - y) ** 2 for x, y in zip(a, b))


def exact(rows, query, k, score, larger_is_nearer):
    scored = sorted(
        ((score(r["vector"], query), r["id"]) for r in rows),
        key=lambda s: -s[0] if larger_is_nearer else s[0],
    )
    return scored[:k]


def same_hits(what, hits, want, tolerance=1e-4):
    """The ids of `hits` are those of `want`, with the same scores (ties may swap)."""
    check(f"{what}: hits", len(hits), len(want))
    for got, (score, _) in zip(hits, want):
        if abs(got["distance"] - score) > tolerance:
            sys.exit(f"{what}: distance {got['distance']} where the exact one is {score}")
    got_ids = {h["id"] for h in hits}
    want_ids = {i for _, i in want}
    if got_ids != want_ids:
        # A tie at the boundary may pick either row; anything else is wrong.
        boundary = want[-1][0]
        for h in hits:
            if h["id"] not in want_ids and abs(h["distance"] - boundary) > tolerance:
                sys.exit(f"{what}: id {h['id']} is not among the exact nearest {sorted(want_ids)}")


# ---------------------------------------------------------------- MilvusClient
client = MilvusClient(uri=uri)
name = "quick_start"
if client.has_collection(name):
    client.drop_collection(name)

# Milvus's quick create: an Int64 "id", a "vector", AUTOINDEX with COSINE, a
# dynamic field for any other key, loaded at once.
client.create_collection(name, dimension=DIM)
check("has_collection", client.has_collection(name), True)
check("load state after quick create", client.get_load_state(name)["state"].name, "Loaded")
index = client.describe_index(name, "vector")
check("index type", index["index_type"], "HNSW")
check("index metric", index["metric_type"], "COSINE")

COLORS = ["red", "green", "blue"]
rows = [
    {"id": i, "vector": v, "color": COLORS[i % 3], "n": i, "tags": {"even": i % 2 == 0}}
    for i, v in enumerate(vectors(ROWS))
]
# A row may leave the dynamic keys out.
rows[10] = {"id": 10, "vector": rows[10]["vector"]}
result = client.insert(name, rows[:1000])
check("insert count", result["insert_count"], 1000)
check("insert ids", list(result["ids"]), list(range(1000)))
client.insert(name, rows[1000:])
client.flush(name)
check("row_count", client.get_collection_stats(name)["row_count"], ROWS)

query = vectors(3)
hits = client.search(name, data=query, limit=10, search_params={"params": {"ef": 64}})
check("search: result per query", len(hits), 3)
for q, got in zip(query, hits):
    same_hits("MilvusClient search", list(got), exact(rows, q, 10, cosine, True))

# Output fields and a filter; offset pages past the first hits.
got = client.search(
    name, data=[query[0]], limit=5, filter="id < 500", output_fields=["vector"]
)[0]
check("filtered search hits", len(got), 5)
for h in got:
    if h["id"] >= 500:
        sys.exit(f"the filter id < 500 kept id {h['id']}")
    stored = h["entity"]["vector"]
    if max(abs(a - b) for a, b in zip(stored, rows[h["id"]]["vector"])) > 1e-6:
        sys.exit(f"search output vector of id {h['id']} differs from the inserted one")
first = client.search(name, data=[query[0]], limit=6)[0]
paged = client.search(name, data=[query[0]], limit=3, offset=3)[0]
check("search offset", [h["id"] for h in paged], [h["id"] for h in first][3:])

got = client.query(name, filter="id in [3, 1, 2]", output_fields=["id", "vector"])
check("query by ids", sorted(r["id"] for r in got), [1, 2, 3])
got = client.query(name, filter="id in [4, 10]", output_fields=["color", "tags"])
check("dynamic keys out", got[0], {"id": 4, "color": "green", "tags": {"even": True}})
check("a row without them", got[1], {"id": 10})
got = client.query(name, filter="id == 5", output_fields=["*"])
check("* with dynamic keys", (got[0]["color"], got[0]["n"]), ("blue", 5))
got = client.search(name, data=[rows[7]["vector"]], limit=1, output_fields=["color"])[0]
check("search: dynamic key out", (got[0]["id"], got[0]["entity"]), (7, {"color": "green"}))
got = client.query(name, filter='color == "red" and n < 30', output_fields=["n"])
check("filter on a dynamic key", sorted(r["id"] for r in got), [i for i in range(0, 30, 3)])
got = client.query(name, filter='$meta["tags"]["even"] == true and n < 12')
check("a nested dynamic key", sorted(r["id"] for r in got), [0, 2, 4, 6, 8])
got = client.query(name, filter="n >= 2995 or id == 10", output_fields=["n"])
check("a row without the key does not match", sorted(r["id"] for r in got), [10, 2995, 2996, 2997, 2998, 2999])
hits = client.search(name, data=[query[0]], limit=5, filter='color in ["blue"]', output_fields=["color"])[0]
check("search filtered on a dynamic key", {h["entity"]["color"] for h in hits}, {"blue"})
check("query count(*)", client.query(name, output_fields=["count(*)"])[0]["count(*)"], ROWS)
check("query limit", len(client.query(name, filter="id >= 0", limit=7)), 7)
check("get by ids", [r["id"] for r in client.get(name, ids=[5, 6])], [5, 6])

deleted = client.delete(name, ids=[0, 1, 2])
check("delete count", deleted["delete_count"], 3)
deleted = client.delete(name, filter="id >= 2990")
check("delete by filter count", deleted["delete_count"], 10)
check(
    "count after deletes",
    client.query(name, output_fields=["count(*)"])[0]["count(*)"],
    ROWS - 13,
)
check("deleted rows are gone", client.query(name, filter="id in [0, 2995]"), [])

upserted = client.upsert(name, [{"id": 7, "vector": [0.5] * DIM}])
check("upsert count", upserted["upsert_count"], 1)
again = client.query(name, filter="id == 7", output_fields=["vector"])
check("upserted row", [round(x, 6) for x in again[0]["vector"]], [0.5] * DIM)
refused("upsert of a wrong dimension", lambda: client.upsert(name, [{"id": 7, "vector": [0.5] * 3}]), ["dim"])
check("a refused upsert keeps the row", len(client.query(name, filter="id == 7")), 1)
check("count after upsert", client.query(name, output_fields=["count(*)"])[0]["count(*)"], ROWS - 13)

# Bad input: the client raises MilvusException naming the problem.
refused("wrong dimension insert", lambda: client.insert(name, [{"id": 1, "vector": [0.1] * 3}]), ["dim"])
refused("missing field", lambda: client.insert(name, [{"id": 1}]), ["vector"])
refused("unknown collection", lambda: client.describe_collection("nowhere"), ["nowhere"], 100)
refused("wrong dimension search", lambda: client.search(name, data=[[0.1] * 3], limit=1), ["dimension"])
refused(
    "duplicate create with another schema",
    lambda: client.create_collection(name, dimension=DIM + 1, enable_dynamic_field=False),
    ["already exists"],
)
refused("bad filter", lambda: client.query(name, filter="vector > 1"), ["vector", "FLOAT_VECTOR"])

check("partitions", client.list_partitions(name), ["_default"])
check("has the default partition", client.has_partition(name, "_default"), True)
check("has another partition", client.has_partition(name, "p1"), False)
refused("create a partition", lambda: client.create_partition(name, "p1"), ["partitions other than", "p1"])

client.release_collection(name)
check("load state after release", client.get_load_state(name)["state"].name, "NotLoad")
refused("search after release", lambda: client.search(name, data=[query[0]], limit=1), ["not loaded"], 101)
client.drop_collection(name)
check("has_collection after drop", client.has_collection(name), False)

# A schema of one's own, with auto_id, scalars, L2 and an HNSW index.
schema = MilvusClient.create_schema(auto_id=True, enable_dynamic_field=False)
schema.add_field("pk", DataType.INT64, is_primary=True)
schema.add_field("title", DataType.VARCHAR, max_length=32)
schema.add_field("year", DataType.INT32)
schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=DIM)
index_params = client.prepare_index_params()
index_params.add_index(
    "embedding", index_type="HNSW", metric_type="L2", index_name="emb_idx", params={"M": 8, "efConstruction": 64}
)
client.create_collection("books", schema=schema, index_params=index_params)
books = [{"title": f"book {i}", "year": 1900 + i % 100, "embedding": v} for i, v in enumerate(vectors(500))]
ids = list(client.insert("books", books)["ids"])
check("auto ids", len(set(ids)), 500)
described = client.describe_index("books", "emb_idx")
check("HNSW M", str(described["M"]), "8")
got = client.search(
    "books", data=[books[42]["embedding"]], limit=1, output_fields=["title", "year"], search_params={"metric_type": "L2"}
)[0]
check("nearest to itself", got[0]["entity"]["title"], "book 42")
check("its year", got[0]["entity"]["year"], 1942)
check("its id", got[0]["pk"], ids[42])
refused("another index", lambda: client.create_index("books", client.prepare_index_params("embedding", index_type="FLAT", metric_type="IP")), ["already has its index"])
client.drop_collection("books")

# A VarChar primary key: ids are strings, in results, filters and deletes.
schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
schema.add_field("doc", DataType.VARCHAR, is_primary=True, max_length=64)
schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=DIM)
index_params = client.prepare_index_params()
index_params.add_index("embedding", index_type="HNSW", metric_type="IP")
client.create_collection("docs", schema=schema, index_params=index_params)
docs = [{"doc": f"doc-{i:04d}", "embedding": v} for i, v in enumerate(vectors(1200))]
result = client.insert("docs", docs[:600])
check("VarChar insert ids", list(result["ids"]), [d["doc"] for d in docs[:600]])
client.insert("docs", docs[600:])
client.flush("docs")
check("VarChar row_count", client.get_collection_stats("docs")["row_count"], 1200)
segments = client.list_persistent_segments("docs")
check("persistent segments' rows", sum(seg.num_rows for seg in segments), 1200)
check("persistent segments flushed", {seg.state.name for seg in segments}, {"Flushed"})
doc_rows = {d["doc"]: {"id": d["doc"], "vector": d["embedding"]} for d in docs}


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


q = vectors(1)[0]
hits = client.search("docs", data=[q], limit=10, search_params={"params": {"ef": 64}})[0]
# MilvusClient's hits name the key by its field.
hits = [{"id": h["doc"], "distance": h["distance"]} for h in hits]
same_hits("VarChar search", hits, exact(doc_rows.values(), q, 10, dot, True))
got = client.query("docs", filter='doc in ["doc-0003", "doc-0001"]', output_fields=["embedding"])
check("VarChar query by keys", sorted(r["doc"] for r in got), ["doc-0001", "doc-0003"])
check("VarChar query vector", [round(x, 5) for x in got[0]["embedding"]], [round(x, 5) for x in doc_rows[got[0]["doc"]]["vector"]])
got = client.query("docs", filter='doc like "doc-000%"', limit=100)
check("VarChar like", sorted(r["doc"] for r in got), [f"doc-000{i}" for i in range(10)])
check("get by VarChar ids", [r["doc"] for r in client.get("docs", ids=["doc-0010", "doc-0011"])], ["doc-0010", "doc-0011"])
check("VarChar delete count", client.delete("docs", ids=["doc-0000", "doc-0001"])["delete_count"], 2)
check("VarChar delete by filter", client.delete("docs", filter='doc like "doc-119%"')["delete_count"], 10)
client.upsert("docs", [{"doc": "doc-0005", "embedding": [0.25] * DIM}])
# Flushed, released and loaded again: the deletes are read back from their files.
client.flush("docs")
client.release_collection("docs")
client.load_collection("docs")
check("VarChar count after deletes", client.query("docs", output_fields=["count(*)"])[0]["count(*)"], 1188)
check("VarChar deleted rows are gone", client.query("docs", filter='doc in ["doc-0000", "doc-1195"]'), [])
got = client.query("docs", filter='doc == "doc-0005"', output_fields=["embedding"])
check("VarChar upserted row", [round(x, 6) for x in got[0]["embedding"]], [0.25] * DIM)
hits = client.search("docs", data=[[0.25] * DIM], limit=3, filter='doc < "doc-0006"')[0]
# doc-0002 .. doc-0005 are left under the filter (0000 and 0001 are deleted).
check("VarChar search with a filter: hits", len(hits), 3)
check("VarChar search with a filter", {h["doc"] for h in hits} <= {f"doc-000{i}" for i in range(2, 6)}, True)
check("VarChar search: the upserted row is nearest", hits[0]["doc"], "doc-0005")
refused("an Int64 key into VarChar", lambda: client.insert("docs", [{"doc": 7, "embedding": [0.1] * DIM}]), ["doc"])
refused("numbers for VarChar keys", lambda: client.delete("docs", filter="doc in [1, 2]"), ["doc"])
client.drop_collection("docs")

# An index dropped and chosen again, with another metric: refused while
# loaded; afterwards every file gets a graph of the new metric, and searches
# score with it.
schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
schema.add_field("id", DataType.INT64, is_primary=True)
schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=DIM)
index_params = client.prepare_index_params()
index_params.add_index("embedding", index_type="HNSW", metric_type="IP", index_name="first")
client.create_collection("reindexed", schema=schema, index_params=index_params)
# Enough rows for a graph per channel's file (1024 rows at least).
big = [{"id": i, "vector": v} for i, v in enumerate(vectors(6000))]
client.insert("reindexed", [{"id": r["id"], "embedding": r["vector"]} for r in big])
client.flush("reindexed")


def wait_indexed(what):
    for _ in range(240):
        index = client.describe_index("reindexed", client.list_indexes("reindexed")[0])
        if index["total_rows"] == len(big) and index["indexed_rows"] == len(big):
            return index
        time.sleep(0.5)
    sys.exit(f"{what}: the index never covered every row: {index}")


check("first index metric", wait_indexed("first index")["metric_type"], "IP")
refused("drop a loaded collection's index", lambda: client.drop_index("reindexed", "first"), ["release"])
client.release_collection("reindexed")
client.drop_index("reindexed", "first")
check("indexes after the drop", client.list_indexes("reindexed"), [])
refused("load without an index", lambda: client.load_collection("reindexed"), ["index not found"], 700)
index_params = client.prepare_index_params()
index_params.add_index("embedding", index_type="HNSW", metric_type="L2", index_name="second", params={"M": 8})
client.create_index("reindexed", index_params)
second = wait_indexed("second index")
check("second index", (second["index_name"], second["metric_type"], str(second["M"])), ("second", "L2", "8"))
client.load_collection("reindexed")
q = vectors(1)[0]
hits = client.search("reindexed", data=[q], limit=10, search_params={"metric_type": "L2", "params": {"ef": 512}})[0]
same_hits("search after the index changed", list(hits), exact(big, q, 10, l2, False))
client.drop_collection("reindexed")

# --------------------------------------------------------------------- the ORM
connections.connect(alias="default", uri=uri)
fields = [
    FieldSchema("id", DataType.INT64, is_primary=True),
    FieldSchema("score", DataType.DOUBLE),
    FieldSchema("embedding", DataType.FLOAT_VECTOR, dim=DIM),
]
collection = Collection("orm_quick_start", CollectionSchema(fields, "the ORM's quick start"))
check("ORM has_collection", utility.has_collection("orm_quick_start"), True)
entities = [list(range(ROWS)), [float(i) / 10 for i in range(ROWS)], vectors(ROWS)]
inserted = collection.insert(entities)
check("ORM insert count", inserted.insert_count, ROWS)
collection.flush()
check("ORM num_entities", collection.num_entities, ROWS)
collection.create_index("embedding", {"index_type": "HNSW", "metric_type": "L2", "params": {"M": 16, "efConstruction": 200}})
collection.load()
orm_rows = [{"id": i, "vector": entities[2][i]} for i in range(ROWS)]
q = vectors(1)[0]
result = collection.search([q], "embedding", {"metric_type": "L2", "params": {"ef": 64}}, limit=10, output_fields=["score"])
hits = [{"id": h.id, "distance": h.distance} for h in result[0]]
same_hits("ORM search", hits, exact(orm_rows, q, 10, l2, False), tolerance=1e-3)
for h in result[0]:
    check(f"ORM output score of {h.id}", round(h.entity.get("score"), 6), round(h.id / 10, 6))
got = collection.query("score > 299.5", output_fields=["score"])
check("ORM query", sorted(r["id"] for r in got), list(range(2996, ROWS)))
collection.delete("id in [2996, 2997]")
check("ORM count after delete", collection.query("", output_fields=["count(*)"])[0]["count(*)"], ROWS - 2)
collection.release()
collection.drop()
check("ORM has_collection after drop", utility.has_collection("orm_quick_start"), False)

print("pymilvus quick start: ok")
