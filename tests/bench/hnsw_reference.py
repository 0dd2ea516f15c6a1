"""hnswlib and FAISS (IndexHNSWFlat) on the vectors hnsw_bench wrote (or the
data.npy, queries.npy and truth.npy of tests/bench/search.sh), with the same
parameters, printing the same JSON lines (tests/bench/hnsw.sh runs both sides).

    python3 hnsw_reference.py DIR ROWS DIM QUERIES M EF_CONSTRUCTION EFS THREADS
"""
import json
import os
import sys
import time

import numpy as np


def load(directory, rows, dim, queries):
    if os.path.exists(f"{directory}/data.npy"):  # tests/bench/search.sh
        return np.load(f"{directory}/data.npy"), np.load(f"{directory}/queries.npy"), np.load(f"{directory}/truth.npy")
    data = np.fromfile(f"{directory}/data.f32", dtype="<f4").reshape(rows, dim)
    q = np.fromfile(f"{directory}/queries.f32", dtype="<f4").reshape(queries, dim)
    truth = np.fromfile(f"{directory}/truth.i64", dtype="<i8").reshape(queries, 10)
    return data, q, truth


def recall(found, truth):
    hits = sum(len(set(f[:10]) & set(t)) for f, t in zip(found, truth))
    return hits / (len(truth) * 10)


# Timed passes per setting, the fastest kept (HNSW_REFERENCE_PASSES, default 3):
# one pass of 1,000 queries lasts a tenth of a second, which this VM's noise can
# slow by a third. The proxy side of search.sh keeps the fastest of as many.
PASSES = max(1, int(os.environ.get("HNSW_REFERENCE_PASSES", "3")))


def best_qps(queries, run):
    best = 0.0
    for _ in range(PASSES):
        started = time.perf_counter()
        run()
        best = max(best, queries / (time.perf_counter() - started))
    return best


def report(side, **fields):
    print(json.dumps({"side": side, **fields}), flush=True)


def hnswlib_side(data, q, truth, m, efc, efs, threads):
    import hnswlib

    side = f"hnswlib {hnswlib.__version__ if hasattr(hnswlib, '__version__') else ''}".strip()
    index = hnswlib.Index(space="l2", dim=data.shape[1])
    index.init_index(max_elements=len(data), ef_construction=efc, M=m, random_seed=100)
    index.set_num_threads(threads)
    started = time.perf_counter()
    index.add_items(data, np.arange(len(data)))
    report(side, build_s=round(time.perf_counter() - started, 3))
    for ef in efs:
        index.set_ef(ef)
        index.set_num_threads(1)
        found = [index.knn_query(v.reshape(1, -1), k=10)[0][0] for v in q]
        qps_1 = best_qps(len(q), lambda: [index.knn_query(v.reshape(1, -1), k=10) for v in q])
        index.set_num_threads(threads)
        qps_n = best_qps(len(q), lambda: index.knn_query(q, k=10))
        report(side, ef=ef, recall=round(recall(found, truth), 4), qps_1=round(qps_1, 1), qps_n=round(qps_n, 1))


def faiss_side(data, q, truth, m, efc, efs, threads):
    import faiss

    side = f"faiss {faiss.__version__} HNSWFlat"
    faiss.omp_set_num_threads(threads)
    index = faiss.IndexHNSWFlat(data.shape[1], m)
    index.hnsw.efConstruction = efc
    started = time.perf_counter()
    index.add(data)
    report(side, build_s=round(time.perf_counter() - started, 3))
    for ef in efs:
        index.hnsw.efSearch = ef
        faiss.omp_set_num_threads(1)
        found = [index.search(v.reshape(1, -1), 10)[1][0] for v in q]
        qps_1 = best_qps(len(q), lambda: [index.search(v.reshape(1, -1), 10) for v in q])
        faiss.omp_set_num_threads(threads)
        qps_n = best_qps(len(q), lambda: index.search(q, 10))
        report(side, ef=ef, recall=round(recall(found, truth), 4), qps_1=round(qps_1, 1), qps_n=round(qps_n, 1))


def main():
    directory, rows, dim, queries, m, efc, efs, threads = sys.argv[1:9]
    rows, dim, queries, m, efc, threads = map(int, (rows, dim, queries, m, efc, threads))
    efs = [int(e) for e in efs.split(",")]
    data, q, truth = load(directory, rows, dim, queries)
    hnswlib_side(data, q, truth, m, efc, efs, threads)
    try:
        faiss_side(data, q, truth, m, efc, efs, threads)
    except ImportError as e:
        print(f"faiss not available: {e}", file=sys.stderr)


if __name__ == "__main__":
    main()
