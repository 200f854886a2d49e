// KvTier: a store of encoded block records (block_record.h) below the host tier: the local disk
// (disk_tier.h) and Redis (redis_tier.h). The engine never calls a KvTier: the TierWorker does,
// on its own thread, so tier I/O never blocks the engine thread.
//
// Contract: Put stores a record under its key and returns true, or false when the tier already
// holds that key and wrote nothing (best effort: a failed write is an error Status, counted, never
// fatal); Get returns the bytes stored under a key (NotFound on a miss, Unavailable while the tier
// is off); Remove drops a record found corrupt. The caller verifies every record it gets
// (DecodeBlockRecord), so a tier may return stale or damaged bytes without harm.
//
// Thread-safety: Put / Get / Remove are called from one thread (the TierWorker's); MayContain,
// enabled() and Stats() from any thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kiln/status.h"
#include "kv/block_hash.h"

namespace kiln {

// Counters of one tier, cumulative since start. "Load" is the direction toward the device
// (a lower tier → host, host → device); "store" away from it.
struct TierStats {
  std::string name;  // "host" | "disk" | "redis"
  bool enabled = true;
  int64_t capacity_bytes = 0;
  int64_t used_bytes = 0;
  int64_t query_tokens = 0;  // prompt tokens looked up in this tier (after the tiers above missed)
  int64_t hit_tokens = 0;    // of those, found here
  int64_t bytes_loaded = 0;
  int64_t bytes_stored = 0;
  double load_seconds = 0.0;          // time spent moving bytes_loaded
  double store_seconds = 0.0;         // time spent moving bytes_stored
  int64_t num_loads = 0;              // load operations (blocks of one request at a time)
  double load_latency_seconds = 0.0;  // sum over loads: from request to data ready
  int64_t errors = 0;                 // failed or corrupt reads / writes
  int64_t dropped_writes = 0;         // stores skipped (queue full, tier off, over its size limit)
};

class KvTier {
 public:
  virtual ~KvTier() = default;
  virtual const std::string& name() const = 0;
  virtual StatusOr<bool> Put(const BlockHash& key, std::span<const uint8_t> record) = 0;
  virtual Status Get(const BlockHash& key, std::vector<uint8_t>* record) = 0;
  virtual void Remove(const BlockHash& key) = 0;
  // False only when `key` is certainly not stored (no I/O: the disk tier's index; Redis: on/off).
  virtual bool MayContain(const BlockHash& key) const = 0;
  // Capacity and occupancy (bytes); the TierWorker adds the traffic counters.
  virtual void FillStats(TierStats* stats) const = 0;
};

}  // namespace kiln
