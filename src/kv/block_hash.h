// Block hashing for the prefix cache: a chained 128-bit hash of (parent hash, the block's token
// ids), rooted in a hash of the request's extra keys (cache_salt, adapter id, ...). Two requests
// share a cached block only when their whole prefix up to and including that block (and their
// extra keys) hash equally; the pool additionally verifies token ids and the parent link on every
// hit (block_pool.h), so a hash collision can never hand out another prompt's KV.
//
// Not responsible for: deciding what is cached (kv_cache_manager.h) or storing blocks
// (block_pool.h). Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace kiln {

struct BlockHash {
  uint64_t lo = 0;
  uint64_t hi = 0;
  friend bool operator==(const BlockHash& a, const BlockHash& b) {
    return a.lo == b.lo && a.hi == b.hi;
  }
};

struct BlockHashHasher {
  size_t operator()(const BlockHash& h) const { return static_cast<size_t>(h.lo ^ (h.hi * 31)); }
};

// The parent hash of a sequence's first block: a hash of its extra keys (empty → a fixed value).
BlockHash RootBlockHash(std::string_view extra_keys);

// Hash of one full block chained to its parent's hash.
BlockHash ChainBlockHash(const BlockHash& parent, std::span<const int32_t> token_ids);

}  // namespace kiln
