// HostTier: the host-memory tier of the prefix cache. It indexes a fixed pool of block records in
// host memory (pinned on CUDA; owned by the backend, see Backend::AllocateHostKvPool) by block
// hash, verifies hits against each record's stored token ids and parent hash, and evicts the least
// recently used unpinned record when a new one is needed.
//
// A record is one block's KV for every layer, record_bytes() long, in the backend's layout; this
// class never reads it (the backend copies into and out of it, the TierWorker reads and writes it
// for the disk and Redis tiers).
//
// Record states: free (empty, not pinned), reserved (pinned, not yet published: being written),
// published (findable; in the LRU list while unpinned). Pins are taken by in-flight transfers (a
// device→host store or a lower-tier fetch writing the record, a host→device load or a lower-tier
// write reading it); a pinned record is never evicted. Unpinning a reserved record that was never
// published frees it.
//
// Invariants (CheckInvariants): every record is exactly one of free / pinned / in the LRU list;
// the index maps each published record's key to it. Not thread-safe: engine thread only (the
// TierWorker touches record bytes only while the engine holds a pin for it).
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "kiln/status.h"
#include "kv/block_hash.h"

namespace kiln {

class HostTier final {
 public:
  // `base` holds num_records records of record_bytes each and outlives this object.
  HostTier(uint8_t* base, int64_t record_bytes, int64_t num_records, int block_size);
  HostTier(const HostTier&) = delete;
  HostTier& operator=(const HostTier&) = delete;

  int64_t num_records() const { return static_cast<int64_t>(pins_.size()); }
  int64_t record_bytes() const { return record_bytes_; }
  int64_t num_published() const { return static_cast<int64_t>(index_.size()); }
  int64_t num_evictions() const { return num_evictions_; }
  int block_size() const { return block_size_; }
  uint8_t* record(int64_t r) { return base_ + r * record_bytes_; }

  // The published record holding `token_ids` under `key` with parent hash `parent`; -1 when none.
  int64_t Find(const BlockHash& key, std::span<const int32_t> token_ids,
               const BlockHash& parent) const;
  bool Contains(const BlockHash& key) const { return index_.count(key) != 0; }

  // A record to write into, pinned once: a free one, else the least recently used unpinned
  // published record (evicted). -1 when every record is pinned.
  int64_t Reserve();
  // Makes a reserved (pinned, unpublished) record findable. False, and nothing changes, when the
  // key is already published (the caller then unpins the record, which frees it).
  bool Publish(int64_t r, const BlockHash& key, const BlockHash& parent,
               std::span<const int32_t> token_ids);
  void Pin(int64_t r);
  // At zero pins: a published record becomes the most recently used; an unpublished one is freed.
  void Unpin(int64_t r);
  // Marks a published, unpinned record most recently used.
  void Touch(int64_t r);

  Status CheckInvariants() const;

 private:
  void LruUnlink(int64_t r);
  void LruPushBack(int64_t r);

  uint8_t* base_;
  int64_t record_bytes_;
  int block_size_;
  std::vector<int32_t> pins_;
  std::vector<bool> published_;
  std::vector<BlockHash> keys_, parents_;
  std::vector<int32_t> token_ids_;    // [num_records * block_size]
  std::vector<int64_t> prev_, next_;  // LRU links (published and unpinned records only)
  std::vector<bool> in_lru_;
  int64_t lru_head_ = -1, lru_tail_ = -1;
  std::vector<int64_t> free_;  // free records (stack)
  std::unordered_map<BlockHash, int64_t, BlockHashHasher> index_;
  int64_t num_evictions_ = 0;
};

}  // namespace kiln
