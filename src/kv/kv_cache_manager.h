// KvCacheManager: the per-sequence face of the BlockPool. It finds the longest cached prefix of a
// sequence, allocates the blocks a step needs (all or nothing), registers full blocks in the prefix
// cache once their KV has been computed, and frees a sequence's blocks on finish, abort or
// preemption (its cached full blocks stay reusable until evicted).
//
// A sequence's KV state is a KvSequence, owned by the caller (the engine's RequestState); the
// manager only mutates it through these calls. Block i of block_table holds token positions
// [i * block_size, (i + 1) * block_size).
//
// Counters: prefix_cache_queries / prefix_cache_hits count prompt tokens looked up / found.
// CheckInvariants(live) verifies the pool's invariants and that every block's ref_count equals the
// number of live block tables that hold it.
// Not thread-safe: owned by the engine thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kiln/status.h"
#include "kv/block_hash.h"
#include "kv/block_pool.h"

namespace kiln {

struct KvCacheOptions {
  int block_size = 16;
  int64_t num_blocks = 0;  // > 0
  bool enable_prefix_caching = true;
};

// The KV-side state of one sequence.
struct KvSequence {
  std::vector<int32_t> block_table;     // logical → physical block ids
  std::vector<BlockHash> block_hashes;  // chained hashes of the leading full blocks (memoized)
  int num_registered_blocks = 0;        // leading blocks of block_table offered to the cache
  std::string extra_keys;               // e.g. the cache_salt; part of every block's hash
};

class KvCacheManager final {
 public:
  explicit KvCacheManager(const KvCacheOptions& options);
  KvCacheManager(const KvCacheManager&) = delete;
  KvCacheManager& operator=(const KvCacheManager&) = delete;

  int block_size() const { return pool_.block_size(); }
  int64_t num_blocks() const { return pool_.num_blocks(); }
  const BlockPool& pool() const { return pool_; }

  // Longest verified cached prefix of `token_ids`, in whole blocks, never covering the last token
  // (its logits must be computed). Writes the hit block ids to *blocks (cleared first) and returns
  // the number of cached tokens. `seq` must hold no blocks. Does not count: the caller records a
  // lookup that it acts on with RecordLookup.
  int FindCachedPrefix(KvSequence* seq, std::span<const int32_t> token_ids,
                       std::vector<int32_t>* blocks);

  // Ensures blocks for positions [0, num_computed_tokens + num_new_tokens). When `cached_blocks`
  // is non-empty the sequence must hold no blocks; they become its first blocks (and
  // num_computed_tokens must equal their token count). Returns false and changes nothing when the
  // pool cannot supply the blocks.
  bool AllocateSlots(KvSequence* seq, int num_computed_tokens, int num_new_tokens,
                     std::span<const int32_t> cached_blocks = {});

  // Registers the full blocks among positions [0, num_computed_tokens) that are not yet
  // registered; `token_ids` holds at least num_computed_tokens ids.
  void CacheComputedBlocks(KvSequence* seq, std::span<const int32_t> token_ids,
                           int num_computed_tokens);

  // Releases every block (last block first, so a prefix's tail is evicted before its head).
  void Free(KvSequence* seq);

  // Blocks needed to hold num_tokens tokens.
  int64_t BlocksFor(int64_t num_tokens) const {
    return (num_tokens + pool_.block_size() - 1) / pool_.block_size();
  }

  void RecordLookup(int64_t num_query_tokens, int64_t num_hit_tokens) {
    queries_ += num_query_tokens;
    hits_ += num_hit_tokens;
  }
  int64_t prefix_cache_queries() const { return queries_; }
  int64_t prefix_cache_hits() const { return hits_; }
  int64_t num_evictions() const { return pool_.num_evictions(); }

  Status CheckInvariants(std::span<const KvSequence* const> live) const;

 private:
  const BlockHash& HashOfBlock(KvSequence* seq, std::span<const int32_t> token_ids, size_t i);

  BlockPool pool_;
  bool enable_prefix_caching_;
  int64_t queries_ = 0;
  int64_t hits_ = 0;
  mutable std::vector<int32_t> scratch_refs_;
};

}  // namespace kiln
