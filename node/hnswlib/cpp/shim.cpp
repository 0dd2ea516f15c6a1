// A C interface to hnswlib's HierarchicalNSW<float> for milvus-like-hnswlib
// (src/lib.rs holds the contract of every function). Nothing here throws
// across the boundary: every exception becomes a non-zero return and a
// message in the caller's buffer.
//
// Distances are the caller's: a space whose distance function and parameter
// the caller gives, so that hnswlib uses the same run-time-chosen SIMD kernels
// as the rest of milvus-like (hnswlib's own are chosen at compile time).

#include <algorithm>
#include <cstring>
#include <exception>
#include <fstream>
#include <memory>
#include <new>
#include <string>

#define HNSWLIB_ERR_OVERRIDE ml_hnsw_quiet()
#include <ostream>
namespace {
// hnswlib prints warnings (M above 10000) to this stream: nowhere.
std::ostream &ml_hnsw_quiet() {
    static std::ostream sink(nullptr);
    return sink;
}
}  // namespace

#include "hnswlib/hnswlib.h"

typedef float (*ml_distance)(const void *, const void *, const void *);
typedef bool (*ml_keep)(const void *, size_t);

namespace {

class Space : public hnswlib::SpaceInterface<float> {
 public:
    Space(size_t dim, ml_distance distance) : dim_(dim), distance_(distance) {}
    size_t get_data_size() override { return dim_ * sizeof(float); }
    hnswlib::DISTFUNC<float> get_dist_func() override { return distance_; }
    void *get_dist_func_param() override { return &dim_; }

 private:
    size_t dim_;
    ml_distance distance_;
};

class Keep : public hnswlib::BaseFilterFunctor {
 public:
    Keep(ml_keep keep, const void *context) : keep_(keep), context_(context) {}
    bool operator()(hnswlib::labeltype label) override { return keep_(context_, label); }

 private:
    ml_keep keep_;
    const void *context_;
};

void write_error(char *error, size_t capacity, const char *message) {
    if (error == nullptr || capacity == 0) return;
    size_t n = std::min(strlen(message), capacity - 1);
    memcpy(error, message, n);
    error[n] = '\0';
}

template <typename F>
int guarded(char *error, size_t capacity, F body) {
    try {
        body();
        return 0;
    } catch (const std::bad_alloc &) {
        write_error(error, capacity, "out of memory");
    } catch (const std::exception &e) {
        write_error(error, capacity, e.what());
    } catch (...) {
        write_error(error, capacity, "unknown C++ exception");
    }
    return 1;
}

// The header of a file hnswlib's saveIndex wrote, checked before loadIndex
// trusts it: the sizes of a graph of `dim` and `m`, and no more nodes than
// the file can hold (loadIndex multiplies and allocates what it reads).
// Returns the node count.
size_t check_header(const char *path, size_t dim, size_t m) {
    std::ifstream in(path, std::ios::binary);
    if (!in.is_open()) throw std::runtime_error("cannot open the graph's file");
    in.seekg(0, in.end);
    std::streamoff file = in.tellg();
    in.seekg(0, in.beg);
    size_t offset_level0, max_elements, count, size_per_element, label_offset, offset_data;
    int max_level;
    hnswlib::tableint entry;
    size_t max_m, max_m0, file_m;
    double mult;
    size_t ef_construction;
    hnswlib::readBinaryPOD(in, offset_level0);
    hnswlib::readBinaryPOD(in, max_elements);
    hnswlib::readBinaryPOD(in, count);
    hnswlib::readBinaryPOD(in, size_per_element);
    hnswlib::readBinaryPOD(in, label_offset);
    hnswlib::readBinaryPOD(in, offset_data);
    hnswlib::readBinaryPOD(in, max_level);
    hnswlib::readBinaryPOD(in, entry);
    hnswlib::readBinaryPOD(in, max_m);
    hnswlib::readBinaryPOD(in, max_m0);
    hnswlib::readBinaryPOD(in, file_m);
    hnswlib::readBinaryPOD(in, mult);
    hnswlib::readBinaryPOD(in, ef_construction);
    if (!in.good() || file < 0) throw std::runtime_error("the graph's file is shorter than its header");
    const size_t links0 = 2 * m * sizeof(hnswlib::tableint) + sizeof(hnswlib::linklistsizeint);
    if (file_m != m || max_m != m || max_m0 != 2 * m)
        throw std::runtime_error("the graph's links per node differ from the header's M");
    if (size_per_element != links0 + dim * sizeof(float) + sizeof(hnswlib::labeltype) ||
        offset_level0 != 0 || offset_data != links0 || label_offset != links0 + dim * sizeof(float))
        throw std::runtime_error("the graph's layout does not fit its dimension");
    if (count > static_cast<size_t>(file) / size_per_element || max_elements < count)
        throw std::runtime_error("the graph's node count does not fit its file");
    if (!(mult > 0.0 && mult < 1.0e6)) throw std::runtime_error("the graph's level factor is invalid");
    return count;
}

}  // namespace

struct ml_hnsw {
    Space space;
    std::unique_ptr<hnswlib::HierarchicalNSW<float>> graph;

    ml_hnsw(size_t dim, ml_distance distance) : space(dim, distance) {}

    // Everything a search or an insertion follows is in bounds: after a
    // load, before the graph is used (a blob's CRC guards against damage,
    // not against a blob made to crash us).
    void check(size_t dim, size_t m) const {
        const auto &g = *graph;
        size_t count = g.cur_element_count;
        const size_t links0 = g.maxM0_ * sizeof(hnswlib::tableint) + sizeof(hnswlib::linklistsizeint);
        const size_t links = g.maxM_ * sizeof(hnswlib::tableint) + sizeof(hnswlib::linklistsizeint);
        if (g.M_ != m || g.maxM_ != m || g.maxM0_ != 2 * m)
            throw std::runtime_error("the graph's links per node differ from the header's M");
        if (g.offsetLevel0_ != 0 || g.offsetData_ != links0 ||
            g.label_offset_ != links0 + dim * sizeof(float) ||
            g.size_data_per_element_ != links0 + dim * sizeof(float) + sizeof(hnswlib::labeltype) ||
            g.size_links_level0_ != links0 || g.size_links_per_element_ != links)
            throw std::runtime_error("the graph's layout does not fit its dimension");
        if (g.num_deleted_ != 0) throw std::runtime_error("the graph has nodes marked deleted");
        if (count == 0) return;
        if (g.enterpoint_node_ >= count || g.maxlevel_ < 0 ||
            g.element_levels_[g.enterpoint_node_] != g.maxlevel_)
            throw std::runtime_error("the graph's entry point is out of range");
        // Rows are numbered 0..count, each once (in any order of nodes: a
        // parallel build places them as its threads get to them).
        std::vector<bool> labelled(count, false);
        for (size_t i = 0; i < count; i++) {
            hnswlib::labeltype label = g.getExternalLabel(i);
            if (label >= count || labelled[label])
                throw std::runtime_error("the nodes' labels are not the rows 0..count, each once");
            labelled[label] = true;
            int level = g.element_levels_[i];
            if (level > g.maxlevel_)
                throw std::runtime_error("a node is above the graph's top level");
            for (int l = 0; l <= level; l++) {
                hnswlib::linklistsizeint *list = g.get_linklist_at_level(i, l);
                size_t n = g.getListCount(list);
                if (n > (l == 0 ? g.maxM0_ : g.maxM_))
                    throw std::runtime_error("a node has more links than M allows");
                const hnswlib::tableint *to = reinterpret_cast<const hnswlib::tableint *>(list + 1);
                for (size_t j = 0; j < n; j++)
                    if (to[j] >= count || g.element_levels_[to[j]] < l)
                        throw std::runtime_error("a link points outside the graph");
            }
        }
    }
};

extern "C" {

ml_hnsw *ml_hnsw_new(size_t dim, ml_distance distance, size_t capacity, size_t m,
                     size_t ef_construction, size_t seed, char *error, size_t capacity_error) {
    ml_hnsw *out = nullptr;
    guarded(error, capacity_error, [&] {
        std::unique_ptr<ml_hnsw> index(new ml_hnsw(dim, distance));
        index->graph.reset(new hnswlib::HierarchicalNSW<float>(
            &index->space, std::max<size_t>(capacity, 1), m, ef_construction, seed));
        out = index.release();
    });
    return out;
}

void ml_hnsw_free(ml_hnsw *index) { delete index; }

size_t ml_hnsw_len(const ml_hnsw *index) { return index->graph->cur_element_count; }

int ml_hnsw_reserve(ml_hnsw *index, size_t capacity, char *error, size_t capacity_error) {
    return guarded(error, capacity_error, [&] {
        if (capacity > index->graph->max_elements_) index->graph->resizeIndex(capacity);
    });
}

void ml_hnsw_set_ef_construction(ml_hnsw *index, size_t ef_construction) {
    index->graph->ef_construction_ = std::max(ef_construction, index->graph->M_);
}

int ml_hnsw_add(ml_hnsw *index, const float *vector, size_t label, char *error,
                size_t capacity_error) {
    return guarded(error, capacity_error, [&] { index->graph->addPoint(vector, label); });
}

// hnswlib's searchKnn with the breadth given per search (hnswlib keeps one
// `ef_` per index, which concurrent searches at different breadths would
// race on). Writes up to `k` (label, distance) pairs, nearest first.
int ml_hnsw_search(const ml_hnsw *index, const float *query, size_t k, size_t ef, ml_keep keep,
                   const void *context, size_t *labels, float *distances, size_t *found,
                   char *error, size_t capacity_error) {
    *found = 0;
    return guarded(error, capacity_error, [&] {
        const auto &g = *index->graph;
        if (g.cur_element_count == 0 || k == 0) return;
        hnswlib::tableint current = g.enterpoint_node_;
        float nearest = g.fstdistfunc_(query, g.getDataByInternalId(current), g.dist_func_param_);
        for (int level = g.maxlevel_; level > 0; level--) {
            bool changed = true;
            while (changed) {
                changed = false;
                hnswlib::linklistsizeint *list = g.get_linklist(current, level);
                size_t n = g.getListCount(list);
                const hnswlib::tableint *to = reinterpret_cast<const hnswlib::tableint *>(list + 1);
                for (size_t i = 0; i < n; i++) {
                    float d = g.fstdistfunc_(query, g.getDataByInternalId(to[i]), g.dist_func_param_);
                    if (d < nearest) {
                        nearest = d;
                        current = to[i];
                        changed = true;
                    }
                }
            }
        }
        Keep filter(keep, context);
        auto top = keep == nullptr
                       ? g.searchBaseLayerST<true>(current, query, std::max(ef, k))
                       : g.searchBaseLayerST<false>(current, query, std::max(ef, k), &filter);
        while (top.size() > k) top.pop();
        size_t n = top.size();
        *found = n;
        while (!top.empty()) {
            n--;
            labels[n] = g.getExternalLabel(top.top().second);
            distances[n] = top.top().first;
            top.pop();
        }
    });
}

int ml_hnsw_save(const ml_hnsw *index, const char *path, char *error, size_t capacity_error) {
    return guarded(error, capacity_error, [&] { index->graph->saveIndex(path); });
}

// Reads a file `ml_hnsw_save` wrote, with room for `capacity` nodes, and
// checks it (`check`) before answering.
ml_hnsw *ml_hnsw_load(const char *path, size_t dim, size_t m, ml_distance distance,
                      size_t capacity, char *error, size_t capacity_error) {
    ml_hnsw *out = nullptr;
    guarded(error, capacity_error, [&] {
        size_t count = check_header(path, dim, m);
        std::unique_ptr<ml_hnsw> index(new ml_hnsw(dim, distance));
        index->graph.reset(new hnswlib::HierarchicalNSW<float>(&index->space));
        try {
            // Room for `capacity` nodes, or the file's: not the capacity the
            // file claims, which only its writer needed.
            index->graph->loadIndex(path, &index->space, std::max(capacity, count));
        } catch (...) {
            // hnswlib's loadIndex may stop with its node count read and its
            // tables not yet made: the destructor must then free nothing more.
            auto &g = *index->graph;
            if (g.linkLists_ == nullptr || g.element_levels_.size() < g.cur_element_count)
                g.cur_element_count = 0;
            throw;
        }
        index->check(dim, m);
        out = index.release();
    });
    return out;
}

}  // extern "C"
