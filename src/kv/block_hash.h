// Block hashing for the prefix cache: a chained XXH3-128 hash of (parent hash, the block's token
// ids), rooted in a hash of the cache namespace (model, dtype, KV layout: set by the engine) and
// the request's extra keys (cache_salt, adapter id, ...). Two requests share a cached block only
// when their whole prefix up to and including that block (and their namespace and extra keys) hash
// equally; every tier additionally verifies the block's token ids and its parent's hash on every
// hit (block_pool.h, host_tier.h, block_record.h), so a hash collision of one block can never hand
// out another prompt's KV, and a chain collision needs a 128-bit XXH3 collision.
//
// The hash is persisted by the disk and Redis tiers: kBlockHashFormat names the function and the
// byte layout below, and is stored in every record; change it whenever either changes.
//   root  = XXH3_128(seed = kBlockHashFormat, u64 len(namespace) ++ namespace ++ extra_keys)
//   chain = XXH3_128(seed = kBlockHashFormat, parent.lo ++ parent.hi ++ token ids as int32 LE)
//
// Not responsible for: deciding what is cached (kv_cache_manager.h) or storing blocks.
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace kiln {

// Version of the block hash function and layout (see above). Persisted.
inline constexpr uint32_t kBlockHashFormat = 1;

struct BlockHash {
  uint64_t lo = 0;
  uint64_t hi = 0;
  friend bool operator==(const BlockHash& a, const BlockHash& b) {
    return a.lo == b.lo && a.hi == b.hi;
  }
  // 32 lowercase hex digits (hi then lo): the key of a block in the disk and Redis tiers.
  std::string Hex() const;
};

struct BlockHashHasher {
  size_t operator()(const BlockHash& h) const { return static_cast<size_t>(h.lo ^ (h.hi * 31)); }
};

// The parent hash of a sequence's first block: a hash of the cache namespace and extra keys.
BlockHash RootBlockHash(std::string_view cache_namespace, std::string_view extra_keys);
inline BlockHash RootBlockHash(std::string_view extra_keys) {
  return RootBlockHash("", extra_keys);
}

// Hash of one full block chained to its parent's hash.
BlockHash ChainBlockHash(const BlockHash& parent, std::span<const int32_t> token_ids);

// XXH3-64 of bytes (record checksums).
uint64_t Checksum64(const void* data, size_t size);

}  // namespace kiln
