// SetUpKvTiers: turns the tier options (CacheOptions: cpu_offload_bytes, disk_cache_dir,
// redis_url, ...) into what EngineCore takes: the number of host records (the backend's host pool
// is allocated here), the lower tiers (disk, then Redis) and the cache namespace that keys every
// block (model identity, dtype, the backend's KV record layout), so that persisted or shared
// records of another model or layout are never loaded.
//
// Host records: exactly cpu_offload_bytes / record bytes (never raised: with a disk or Redis tier
// and fewer records than two longest prompts' blocks, a warning says that long prefixes come in
// several fetches). Without cpu_offload_bytes, a disk or Redis tier gets a staging pool of its
// own: two longest prompts' blocks, at least kMinStagingRecords, at most kMaxStagingBytes (or
// kMinStagingRecords if more). The resulting size is logged.
//
// Errors: a backend without block transfers when a tier is asked for, a host budget smaller than
// one record or larger than the machine's physical memory (ResourceExhausted; so is an
// allocation that fails), a disk directory that cannot be created or written. An unreachable
// Redis is not an error (the tier starts off, with a warning). Called once, at engine creation.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "kiln/options.h"
#include "kv/tier.h"

namespace kiln {

struct KvTierSetup {
  int64_t host_records = 0;
  std::vector<std::unique_ptr<KvTier>> lower_tiers;
  std::string cache_namespace;  // empty when no tier is on (nothing outside this process)
};

// The namespace of a model's KV: architecture and shapes, weights identity (the dummy seed, or a
// fingerprint of the checkpoint files' names, sizes and sampled bytes), dtype, KV layout. Called
// only when a tier is on (it reads the checkpoint files).
std::string KvCacheNamespace(const EngineOptions& options, const Backend& backend);

// Bounds of the staging pool made for disk / Redis when no host tier is asked for.
inline constexpr int64_t kMinStagingRecords = 64;
inline constexpr int64_t kMaxStagingBytes = int64_t{1} << 30;

// This machine's physical memory in bytes (0 when unknown).
int64_t PhysicalMemoryBytes();

StatusOr<KvTierSetup> SetUpKvTiers(const EngineOptions& options, Backend* backend,
                                   int max_model_len);

}  // namespace kiln
