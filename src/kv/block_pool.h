// BlockPool: a fixed pool of KV blocks with reference counts, an intrusive doubly-linked LRU list
// of free blocks and a hash index of cached (reusable) full blocks.
//
// Responsibilities: hand out blocks (Allocate: O(1) per block, from the LRU head), take references
// (Ref: O(1), revives a free cached block out of the list), drop them (Unref: O(1); at zero a
// cached block joins the MRU tail, an empty one the head so it is reused first), register computed
// full blocks (Cache) and find them (Find). Eviction is lazy: a cached block keeps its contents and
// index entry until Allocate reuses it.
//
// Verification: Find only returns a block whose stored token ids equal the caller's and whose
// stored parent hash equals the caller's (the root hash, which covers the cache namespace and extra
// keys, for a first block); so a collision of one block's hash can never return another prompt's
// KV. A block is found even when its parent block was evicted (the parent may be reloaded from a
// lower tier: kv_cache_manager.h).
//
// Invariants (CheckInvariants): every block is either in use (ref_count > 0, not in the list) or
// free (ref_count == 0, in the list); num free + num in use == total; index entries point to
// cached blocks with that hash. Not thread-safe: owned by the engine thread.
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "kiln/status.h"
#include "kv/block.h"
#include "kv/block_hash.h"

namespace kiln {

class BlockPool final {
 public:
  BlockPool(int64_t num_blocks, int block_size, bool enable_caching);
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  int64_t num_blocks() const { return static_cast<int64_t>(blocks_.size()); }
  int block_size() const { return block_size_; }
  int64_t num_free_blocks() const { return num_free_; }  // allocatable (cached or empty)
  int64_t num_cached_free_blocks() const { return num_cached_free_; }
  int64_t num_used_blocks() const { return num_blocks() - num_free_; }
  int64_t num_evictions() const { return num_evictions_; }
  int64_t num_cached_blocks() const { return static_cast<int64_t>(index_.size()); }

  // Appends n blocks (ref_count 1 each) to *out, evicting cached ones LRU-first. Returns false and
  // changes nothing when fewer than n blocks are free.
  bool Allocate(int64_t n, std::vector<int32_t>* out);
  // Takes one more reference; a free block leaves the free list (cache revive).
  void Ref(int32_t block_id);
  // Drops one reference; at zero the block becomes free.
  void Unref(int32_t block_id);

  // The cached block holding `token_ids` under `hash` whose parent hash is `parent_hash`; -1 when
  // none.
  int32_t Find(const BlockHash& hash, std::span<const int32_t> token_ids,
               const BlockHash& parent_hash) const;
  // Registers a full, computed, in-use block. No-op when caching is off, the block is already
  // cached, or another block already holds `hash`.
  void Cache(int32_t block_id, const BlockHash& hash, std::span<const int32_t> token_ids,
             const BlockHash& parent_hash);

  const KvBlock& block(int32_t block_id) const { return blocks_[static_cast<size_t>(block_id)]; }
  Status CheckInvariants() const;

 private:
  void PushFront(int32_t id);
  void PushBack(int32_t id);
  void Unlink(int32_t id);
  void Uncache(KvBlock& b);

  int block_size_;
  bool enable_caching_;
  std::vector<KvBlock> blocks_;
  std::vector<int32_t> token_ids_;       // [num_blocks * block_size] of cached blocks
  int32_t free_head_ = -1;               // LRU end: next to be allocated
  int32_t free_tail_ = -1;               // MRU end
  int64_t num_free_ = 0;
  int64_t num_cached_free_ = 0;
  int64_t num_evictions_ = 0;
  std::unordered_map<BlockHash, int32_t, BlockHashHasher> index_;
};

}  // namespace kiln
