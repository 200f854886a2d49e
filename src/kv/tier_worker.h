// TierWorker: the thread that moves block records between the host tier's records and the lower
// tiers (disk, Redis), so that the engine thread never waits for I/O.
//
// Jobs (engine thread → worker): a write (one host record, pinned by the caller until its
// completion is polled) goes to every lower tier that lacks it; a fetch (the missing continuation
// of one prompt: keys in chain order, each with a pinned host record to fill) tries the tiers in
// order for each key and stops at the first key that no tier holds. Every record read is verified
// (DecodeBlockRecord) before its payload is copied into the host record; a corrupt one is a miss
// and is removed from its tier. Fetches run before writes; writes beyond max_queued_writes are
// dropped (counted), never queued without bound.
//
// Completions (worker → engine thread) are collected by Poll(), non-blocking. Stats() counts
// queries, bytes, time, errors and dropped writes per tier; hit_tokens stays 0 here: a fetched
// block is a hit of its tier when a request uses it (the KvCacheManager counts that, per the
// completion's sources), not when it is fetched.
//
// Thread-safety: Enqueue*, Poll, MayContain and Stats may be called from one engine thread while
// the worker runs; the destructor stops the worker after its current job (queued jobs are
// dropped; their completions are never delivered).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "kv/block_hash.h"
#include "kv/tier.h"

namespace kiln {

struct TierWorkerOptions {
  int block_size = 16;
  int64_t record_bytes = 0;     // payload bytes of one block (the backend's record)
  uint64_t namespace_hash = 0;  // XXH3-64 of the cache namespace, stored in every record
  size_t max_queued_writes = 1024;
};

struct TierWriteJob {
  int64_t host_record = -1;
  BlockHash key, parent;
  std::vector<int32_t> token_ids;    // [block_size]
  const uint8_t* payload = nullptr;  // the pinned host record
};

struct TierFetchJob {
  uint64_t id = 0;
  std::vector<BlockHash> keys, parents;
  std::vector<int32_t> token_ids;  // [keys.size() * block_size]
  std::vector<int64_t> host_records;
  std::vector<uint8_t*> payloads;  // the pinned host records to fill
};

struct TierCompletion {
  bool is_fetch = false;
  uint64_t fetch_id = 0;
  int64_t host_record = -1;  // a write's record
  int num_fetched = 0;       // a fetch: leading keys whose records were filled
  std::vector<int> sources;  // a fetch: per filled key, the index of the tier it came from
};

class TierWorker final {
 public:
  TierWorker(const TierWorkerOptions& options, std::vector<std::unique_ptr<KvTier>> tiers);
  ~TierWorker();
  TierWorker(const TierWorker&) = delete;
  TierWorker& operator=(const TierWorker&) = delete;

  // False (and the write is counted as dropped) when the queue is full.
  bool EnqueueWrite(TierWriteJob job);
  void EnqueueFetch(TierFetchJob job);
  // Appends the completions since the last call.
  void Poll(std::vector<TierCompletion>* out);
  // True when some tier may hold `key` (no I/O).
  bool MayContain(const BlockHash& key) const;
  // Jobs enqueued whose completions were not polled yet.
  int64_t num_pending() const;
  std::vector<TierStats> Stats() const;
  const std::vector<std::unique_ptr<KvTier>>& tiers() const { return tiers_; }

 private:
  void Run();
  void DoFetch(TierFetchJob& job, TierCompletion* done);
  void DoWrite(const TierWriteJob& job);

  TierWorkerOptions options_;
  std::vector<std::unique_ptr<KvTier>> tiers_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<TierFetchJob> fetches_;
  std::deque<TierWriteJob> writes_;
  std::vector<TierCompletion> completions_;
  int64_t pending_ = 0;
  std::vector<TierStats> stats_;  // per tier (guarded by mu_)
  bool stop_ = false;
  std::vector<uint8_t> buf_;  // worker thread only
  std::thread thread_;
};

}  // namespace kiln
