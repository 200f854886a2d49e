// DiskTier: block records (block_record.h) as files in one directory, bounded in size with LRU
// eviction, that survive restarts: Open() indexes the directory's existing records (oldest
// modification time first), so a restarted server serves hits from them. Open() also writes,
// renames and deletes a probe file: a directory that cannot hold records is an IOError at startup.
//
// Files: <dir>/<key hex>.kvb, written to <key hex>.tmp and renamed (a crash leaves no partial
// record under a record's name; leftover .tmp files are deleted by Open). The record's contents are
// verified by the reader (TierWorker), so a corrupt or truncated file is a miss and is removed.
// A Get refreshes the file's LRU position (in memory; the order after a restart follows mtime,
// which Get also refreshes).
//
// Thread-safety: Put / Get / Remove on the TierWorker thread; MayContain and FillStats from any
// thread (the index is guarded by a mutex).
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "kv/tier.h"

namespace kiln {

struct DiskTierOptions {
  std::string dir;             // created when missing
  int64_t capacity_bytes = 0;  // > 0: records are evicted (LRU) beyond it
  Status Validate() const;
};

class DiskTier final : public KvTier {
 public:
  static StatusOr<std::unique_ptr<DiskTier>> Open(const DiskTierOptions& options);

  const std::string& name() const override { return name_; }
  StatusOr<bool> Put(const BlockHash& key, std::span<const uint8_t> record) override;
  Status Get(const BlockHash& key, std::vector<uint8_t>* record) override;
  void Remove(const BlockHash& key) override;
  bool MayContain(const BlockHash& key) const override;
  void FillStats(TierStats* stats) const override;

  int64_t num_records() const;
  std::string PathOf(const BlockHash& key) const;

 private:
  explicit DiskTier(const DiskTierOptions& options) : options_(options) {}
  struct Entry {
    int64_t size_bytes = 0;
    std::list<BlockHash>::iterator lru;
  };
  // Evicts LRU records until `incoming` more bytes fit. mu_ held.
  void EvictFor(int64_t incoming);
  void EraseLocked(const BlockHash& key);

  const std::string name_ = "disk";
  DiskTierOptions options_;
  mutable std::mutex mu_;
  std::unordered_map<BlockHash, Entry, BlockHashHasher> index_;
  std::list<BlockHash> lru_;  // front: least recently used
  int64_t used_bytes_ = 0;
};

// Parses 32 hex digits (BlockHash::Hex) into *key.
bool ParseBlockHashHex(std::string_view hex, BlockHash* key);

}  // namespace kiln
