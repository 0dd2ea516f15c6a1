// Milvus's quick start with Milvus's Go SDK (github.com/milvus-io/milvus/client/v2)
// against milvus-like: the same flow as quickstart.py, a second official client.
// Every answer is checked against what was inserted: counts, ids, and distances
// against an exact computation.
//
// Built and run by tests/tests/milvus_api.rs through tests/scripts/go-client.sh:
//
//	quickstart ADDRESS
//
// Prints "go quick start: ok" at the end; exits non-zero, saying what differed,
// on any mismatch.
package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/milvus-io/milvus/client/v2/column"
	"github.com/milvus-io/milvus/client/v2/entity"
	"github.com/milvus-io/milvus/client/v2/index"
	"github.com/milvus-io/milvus/client/v2/milvusclient"
)

const (
	dim  = 16
	rows = 3000
)

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func must(what string, err error) {
	if err != nil {
		fail("%s: %v", what, err)
	}
}

func check[T comparable](what string, got, want T) {
	if got != want {
		fail("%s: got %v, want %v", what, got, want)
	}
}

// refused: err is a refusal whose message holds every one of words.
func refused(what string, err error, words ...string) {
	if err == nil {
		fail("%s: answered, but must be refused", what)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			fail("%s: the error does not say %q: %v", what, w, err)
		}
	}
}

func vectors(rng *rand.Rand, n int) [][]float32 {
	out := make([][]float32, n)
	for i := range out {
		v := make([]float32, dim)
		for j := range v {
			v[j] = rng.Float32()*2 - 1
		}
		out[i] = v
	}
	return out
}

func cosine(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	return dot / (math.Sqrt(na) * math.Sqrt(nb))
}

func l2(a, b []float32) float64 {
	var s float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		s += d * d
	}
	return s
}

type scored struct {
	score float64
	id    int64
}

// exact: the k nearest of data to q, nearest first.
func exact(data [][]float32, q []float32, k int, score func(a, b []float32) float64, larger bool) []scored {
	all := make([]scored, len(data))
	for i, v := range data {
		all[i] = scored{score(v, q), int64(i)}
	}
	sort.Slice(all, func(i, j int) bool {
		if larger {
			return all[i].score > all[j].score
		}
		return all[i].score < all[j].score
	})
	return all[:k]
}

// sameHits: the hits are the exact nearest, with the same scores (ties at the
// boundary may pick either row).
func sameHits(what string, rs milvusclient.ResultSet, want []scored, tolerance float64) {
	check(what+": hits", rs.ResultCount, len(want))
	ids := rs.IDs.(*column.ColumnInt64).Data()
	wanted := map[int64]bool{}
	for _, w := range want {
		wanted[w.id] = true
	}
	for i, s := range rs.Scores {
		if math.Abs(float64(s)-want[i].score) > tolerance {
			fail("%s: score %v where the exact one is %v", what, s, want[i].score)
		}
		if !wanted[ids[i]] && math.Abs(float64(s)-want[len(want)-1].score) > tolerance {
			fail("%s: id %d is not among the exact nearest", what, ids[i])
		}
	}
}

func count(ctx context.Context, c *milvusclient.Client, name string) int64 {
	rs, err := c.Query(ctx, milvusclient.NewQueryOption(name).WithOutputFields("count(*)"))
	must("count(*)", err)
	n, err := rs.GetColumn("count(*)").GetAsInt64(0)
	must("count(*) value", err)
	return n
}

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rng := rand.New(rand.NewSource(7))
	c, err := milvusclient.New(ctx, &milvusclient.ClientConfig{Address: os.Args[1]})
	must("connect", err)
	defer c.Close(ctx)

	name := "go_quick_start"
	_ = c.DropCollection(ctx, milvusclient.NewDropCollectionOption(name))
	// The quick setup: Int64 "id", "vector", AUTOINDEX COSINE, loaded.
	must("create", c.CreateCollection(ctx, milvusclient.SimpleCreateCollectionOptions(name, dim).
		WithAutoID(false).WithDynamicSchema(false)))
	has, err := c.HasCollection(ctx, milvusclient.NewHasCollectionOption(name))
	must("has", err)
	check("has", has, true)
	state, err := c.GetLoadState(ctx, milvusclient.NewGetLoadStateOption(name))
	must("load state", err)
	check("load state", state.State, entity.LoadStateLoaded)

	data := vectors(rng, rows)
	ids := make([]int64, rows)
	for i := range ids {
		ids[i] = int64(i)
	}
	inserted, err := c.Insert(ctx, milvusclient.NewColumnBasedInsertOption(name).
		WithInt64Column("id", ids).WithFloatVectorColumn("vector", dim, data))
	must("insert", err)
	check("insert count", inserted.InsertCount, int64(rows))
	flush, err := c.Flush(ctx, milvusclient.NewFlushOption(name))
	must("flush", err)
	must("flush wait", flush.Await(ctx))
	stats, err := c.GetCollectionStats(ctx, milvusclient.NewGetCollectionStatsOption(name))
	must("stats", err)
	check("row_count", stats["row_count"], fmt.Sprint(rows))

	queries := vectors(rng, 3)
	qs := make([]entity.Vector, len(queries))
	for i, q := range queries {
		qs[i] = entity.FloatVector(q)
	}
	results, err := c.Search(ctx, milvusclient.NewSearchOption(name, 10, qs).
		WithAnnParam(index.NewHNSWAnnParam(64)))
	must("search", err)
	check("result sets", len(results), 3)
	for i, rs := range results {
		sameHits("search", rs, exact(data, queries[i], 10, cosine, true), 1e-4)
	}
	filtered, err := c.Search(ctx, milvusclient.NewSearchOption(name, 5, qs[:1]).
		WithFilter("id < 500").WithOutputFields("vector"))
	must("filtered search", err)
	check("filtered hits", filtered[0].ResultCount, 5)
	for _, id := range filtered[0].IDs.(*column.ColumnInt64).Data() {
		if id >= 500 {
			fail("the filter id < 500 kept id %d", id)
		}
	}
	got, err := c.Query(ctx, milvusclient.NewQueryOption(name).WithFilter("id in [3, 1, 2]").WithOutputFields("vector"))
	must("query", err)
	check("query rows", got.ResultCount, 3)
	check("count", count(ctx, c, name), int64(rows))

	deleted, err := c.Delete(ctx, milvusclient.NewDeleteOption(name).WithInt64IDs("id", []int64{0, 1, 2}))
	must("delete", err)
	check("delete count", deleted.DeleteCount, int64(3))
	deleted, err = c.Delete(ctx, milvusclient.NewDeleteOption(name).WithExpr("id >= 2990"))
	must("delete by filter", err)
	check("delete by filter count", deleted.DeleteCount, int64(10))
	check("count after deletes", count(ctx, c, name), int64(rows-13))

	_, err = c.Insert(ctx, milvusclient.NewColumnBasedInsertOption(name).
		WithInt64Column("id", []int64{1}).WithFloatVectorColumn("vector", 3, [][]float32{{0.1, 0.2, 0.3}}))
	refused("wrong dimension", err, "dim")
	_, err = c.DescribeCollection(ctx, milvusclient.NewDescribeCollectionOption("nowhere"))
	refused("unknown collection", err, "nowhere")

	must("release", c.ReleaseCollection(ctx, milvusclient.NewReleaseCollectionOption(name)))
	_, err = c.Search(ctx, milvusclient.NewSearchOption(name, 1, qs[:1]))
	refused("search after release", err, "not loaded")
	must("drop", c.DropCollection(ctx, milvusclient.NewDropCollectionOption(name)))

	// A schema of one's own: auto_id, a VarChar, an HNSW index with L2.
	schema := entity.NewSchema().WithName("go_books").WithDynamicFieldEnabled(false).
		WithField(entity.NewField().WithName("pk").WithDataType(entity.FieldTypeInt64).WithIsPrimaryKey(true).WithIsAutoID(true)).
		WithField(entity.NewField().WithName("title").WithDataType(entity.FieldTypeVarChar).WithMaxLength(32)).
		WithField(entity.NewField().WithName("embedding").WithDataType(entity.FieldTypeFloatVector).WithDim(dim))
	must("create books", c.CreateCollection(ctx, milvusclient.NewCreateCollectionOption("go_books", schema)))
	task, err := c.CreateIndex(ctx, milvusclient.NewCreateIndexOption("go_books", "embedding", index.NewHNSWIndex(entity.L2, 8, 64)))
	must("create index", err)
	must("index wait", task.Await(ctx))
	load, err := c.LoadCollection(ctx, milvusclient.NewLoadCollectionOption("go_books"))
	must("load", err)
	must("load wait", load.Await(ctx))
	books := vectors(rng, 500)
	titles := make([]string, len(books))
	for i := range titles {
		titles[i] = fmt.Sprintf("book %d", i)
	}
	res, err := c.Insert(ctx, milvusclient.NewColumnBasedInsertOption("go_books").
		WithVarcharColumn("title", titles).WithFloatVectorColumn("embedding", dim, books))
	must("insert books", err)
	check("auto ids", res.IDs.Len(), 500)
	near, err := c.Search(ctx, milvusclient.NewSearchOption("go_books", 1, []entity.Vector{entity.FloatVector(books[42])}).
		WithOutputFields("title"))
	must("search books", err)
	check("nearest hits", near[0].ResultCount, 1)
	title, err := near[0].GetColumn("title").GetAsString(0)
	must("title", err)
	check("nearest to itself", title, "book 42")
	want, err := res.IDs.GetAsInt64(42)
	must("inserted id", err)
	gotID, err := near[0].IDs.GetAsInt64(0)
	must("hit id", err)
	check("its id", gotID, want)
	_, err = c.CreateIndex(ctx, milvusclient.NewCreateIndexOption("go_books", "embedding", index.NewFlatIndex(entity.IP)))
	refused("another index", err, "already has its index")
	must("drop books", c.DropCollection(ctx, milvusclient.NewDropCollectionOption("go_books")))
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		fail("ran out of time")
	}
	fmt.Println("go quick start: ok")
}
