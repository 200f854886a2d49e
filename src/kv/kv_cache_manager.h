// KvCacheManager: the per-sequence face of the KV cache and its tiers. It finds the longest cached
// prefix of a sequence across the device pool (BlockPool) and the host tier (HostTier), allocates
// the blocks a step needs (all or nothing), registers full blocks in the prefix cache once their KV
// has been computed, writes each newly registered block through to the host tier, starts fetches
// from the lower tiers (disk, Redis: TierWorker) into the host tier, and frees a sequence's blocks
// on finish, abort or preemption (its cached full blocks stay reusable until evicted).
//
// A sequence's KV state is a KvSequence, owned by the caller (the engine's RequestState); the
// manager only mutates it through these calls. Block i of block_table holds token positions
// [i * block_size, (i + 1) * block_size).
//
// Lookup order: device → host → disk → Redis. FindCachedPrefix walks the prompt's chained block
// hashes and takes each block from the device pool, else from the host tier (a block to load),
// stopping at the first block neither holds; a device block whose parent is only on the host still
// resolves. Disk and Redis are reached through StartFetch: it asks the TierWorker to copy the
// missing continuation into host records (the request waits meanwhile: FetchPending), after which
// the same lookup hits the host tier.
//
// Transfers: AllocateSlots with host hits creates a load group (host record → newly allocated
// device block, per block) and the sequence waits (LoadPending) until the engine reports it done
// (CompleteCopyGroup); FinishLoad then registers the loaded blocks as computed. CacheComputedBlocks
// creates a store group (device block → a reserved host record) for every newly registered block
// that the host lacks and no store in flight carries; the device block stays referenced (pinned)
// until the store completes, so its slot is not reused while the copy reads it, and the host record
// is published then (and written through to the lower tiers). Groups are handed out by
// TakeCopyGroups, in creation order, for the engine to issue (Backend::CopyKvBlocks). A sequence
// freed while its load is in flight leaves the destination blocks pinned until the load completes.
//
// Counters: prefix_cache_queries / prefix_cache_hits count prompt tokens looked up / found (any
// tier); TierMetrics() has per-tier counters, whose hit_tokens sum to prefix_cache_hits.
// CheckInvariants(live) verifies the pool's and host tier's invariants and that every block's
// ref_count equals the number of live block tables that hold it plus its transfer pins.
// Not thread-safe: owned by the engine thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "kiln/status.h"
#include "kv/block_hash.h"
#include "kv/block_pool.h"
#include "kv/host_tier.h"
#include "kv/tier.h"
#include "kv/tier_worker.h"

namespace kiln {

struct KvCacheOptions {
  int block_size = 16;
  int64_t num_blocks = 0;  // > 0
  bool enable_prefix_caching = true;
  // Model, dtype and KV layout identity: part of every block's root hash (persisted tiers and
  // replicas must never mix KV of different models or layouts).
  std::string cache_namespace;
  // How long a request waits for a lower-tier (disk, Redis) fetch before it runs with what the
  // device and host tiers hold (the fetch still fills the host tier for later requests); < 0 =
  // no limit.
  double fetch_timeout_s = 0.5;
};

// One block copy between the device pool and a host record.
struct BlockTransfer {
  int32_t device_block = -1;
  int64_t host_record = -1;
};

// Copies in one direction that are issued together and complete together.
struct KvCopyGroup {
  uint64_t id = 0;
  bool to_host = false;  // store (device → host) or load (host → device)
  std::vector<BlockTransfer> transfers;
};

// The result of a prefix lookup, per hit block in order: on the device (device_blocks[i] >= 0) or
// on the host (host_records[i] >= 0, to be loaded).
struct PrefixHit {
  std::vector<int32_t> device_blocks;
  std::vector<int64_t> host_records;
  int num_blocks() const { return static_cast<int>(device_blocks.size()); }
  int num_host_blocks() const;
  void Clear() {
    device_blocks.clear();
    host_records.clear();
  }
};

// The KV-side state of one sequence.
struct KvSequence {
  std::vector<int32_t> block_table;     // logical → physical block ids
  std::vector<BlockHash> block_hashes;  // chained hashes of the leading full blocks (memoized)
  int num_registered_blocks = 0;        // leading blocks of block_table offered to the cache
  std::string extra_keys;               // e.g. the cache_salt; part of every block's hash
  uint64_t load_group = 0;              // host → device load of the leading blocks (0: none)
  int num_loaded_blocks = 0;            // leading blocks computed once load_group completes
  uint64_t fetch_id = 0;                // the last lower-tier fetch of this sequence (0: none)
  int num_fetches = 0;
  std::chrono::steady_clock::time_point first_fetch;  // when its first fetch started
  // A lookup whose hit includes host blocks counts once its load succeeded (DeferLookup).
  int64_t deferred_query_tokens = 0;
  PrefixHit deferred_hit;
};

class KvCacheManager final {
 public:
  // `host` and `lower` are optional (null: no such tier); `lower` needs `host`. Both outlive this.
  explicit KvCacheManager(const KvCacheOptions& options, HostTier* host = nullptr,
                          TierWorker* lower = nullptr);
  KvCacheManager(const KvCacheManager&) = delete;
  KvCacheManager& operator=(const KvCacheManager&) = delete;

  int block_size() const { return pool_.block_size(); }
  int64_t num_blocks() const { return pool_.num_blocks(); }
  const BlockPool& pool() const { return pool_; }
  const HostTier* host_tier() const { return host_; }

  // Longest verified cached prefix of `token_ids` over the device pool and host tier, in whole
  // blocks, never covering the last token (its logits must be computed). Fills *hit and returns
  // the number of cached tokens. `seq` must hold no blocks. Does not count: the caller records a
  // lookup that it acts on with RecordLookup.
  int FindCachedPrefix(KvSequence* seq, std::span<const int32_t> token_ids, PrefixHit* hit);

  // Ensures blocks for positions [0, num_computed_tokens + num_new_tokens). With a `hit` the
  // sequence must hold no blocks and num_computed_tokens must equal the hit's token count: its
  // device blocks become the sequence's, and each host block gets a new device block filled by a
  // load (then LoadPending until it completes). Returns false and changes nothing when the pool
  // cannot supply the blocks.
  bool AllocateSlots(KvSequence* seq, int num_computed_tokens, int num_new_tokens,
                     const PrefixHit* hit = nullptr);

  bool LoadPending(const KvSequence& seq) const;
  // After the sequence's load completed (!LoadPending): registers the loaded blocks and returns
  // the number of computed tokens. When the load failed, the load's error: nothing was registered
  // (the blocks hold undefined bytes) and the caller frees them (the scheduler recomputes the
  // request without the cache).
  StatusOr<int> FinishLoad(KvSequence* seq, std::span<const int32_t> token_ids);

  // Starts a fetch of the prompt's missing full blocks from the lower tiers into the host tier;
  // true when one was started (the sequence then waits: FetchPending). The first fetch of a
  // sequence asks for a few blocks (most prompts miss at once, and every block asked for takes a
  // host record, possibly evicting one); each fetch that got every block it asked for allows the
  // next, larger one.
  bool StartFetch(KvSequence* seq, std::span<const int32_t> token_ids);
  // True while the sequence's fetch runs and its first fetch started less than fetch_timeout_s
  // ago (a request waits no longer in all, over all its fetches; a stalled disk or Redis never
  // holds it). With a timeout of 0 a fetch only fills the host tier in the background.
  bool FetchPending(const KvSequence& seq);
  // Fetches a request stopped waiting for (fetch_timeout_s).
  int64_t num_fetch_timeouts() const { return fetch_timeouts_; }

  // Registers the full blocks among positions [0, num_computed_tokens) that are not yet
  // registered (`token_ids` holds at least num_computed_tokens ids) and stores them to the host.
  void CacheComputedBlocks(KvSequence* seq, std::span<const int32_t> token_ids,
                           int num_computed_tokens);

  // Releases every block (last block first, so a prefix's tail is evicted before its head).
  void Free(KvSequence* seq);

  // Copy groups created since the last call, for the engine to issue.
  void TakeCopyGroups(std::vector<KvCopyGroup>* out);
  // The engine's report that group `id` finished (OK) or failed (the error); `seconds` is the
  // copy's duration. A failed store publishes nothing (its host records are freed, nothing goes
  // to the lower tiers); a failed load registers nothing (FinishLoad returns the error).
  void CompleteCopyGroup(uint64_t id, const Status& status, double seconds);
  // Applies the lower tiers' finished fetches and writes.
  void PollLowerTiers();
  // Copies, fetches or lower-tier writes not yet completed (the engine keeps stepping).
  bool has_pending_io() const;
  // Copies or fetches not yet completed: requests may be waiting for them.
  // (A fetch no request waits for any more - timed out or orphaned - does not count.)
  bool has_pending_transfers() const;

  // Blocks needed to hold num_tokens tokens.
  int64_t BlocksFor(int64_t num_tokens) const {
    return (num_tokens + pool_.block_size() - 1) / pool_.block_size();
  }

  // Counts a lookup that the caller acted on: num_query_tokens prompt tokens, the hit it found
  // (FindCachedPrefix; empty when the caller did not look). Each hit block counts for exactly one
  // tier: the device, else the host, else - the first time a request uses a record that a fetch
  // brought into the host tier - the disk or Redis tier it came from.
  void RecordLookup(int64_t num_query_tokens, const PrefixHit& hit);
  // The same for a hit that loads host blocks: counted as a hit when the load succeeds
  // (FinishLoad), as a miss when it fails or the sequence is freed first.
  void DeferLookup(KvSequence* seq, int64_t num_query_tokens, const PrefixHit& hit);
  int64_t prefix_cache_queries() const { return queries_; }
  int64_t prefix_cache_hits() const { return hits_; }
  int64_t num_evictions() const { return pool_.num_evictions(); }
  // Per tier: "device", then "host", "disk", "redis" where present. The device's capacity and
  // used bytes are left to the caller (the manager does not know the record size).
  std::vector<TierStats> TierMetrics() const;

  Status CheckInvariants(std::span<const KvSequence* const> live) const;

 private:
  struct StoreMeta {
    BlockHash key, parent;
    std::vector<int32_t> token_ids;
  };
  struct Group {
    bool to_host = false;
    std::vector<BlockTransfer> transfers;
    std::vector<StoreMeta> metas;  // stores: what each record will hold
    std::vector<int32_t> orphans;  // loads: destination blocks pinned after their sequence left
    std::chrono::steady_clock::time_point created;
  };
  struct Fetch {
    std::vector<int64_t> records;
    std::vector<StoreMeta> metas;
    bool orphaned = false;   // its sequence was freed meanwhile
    bool timed_out = false;  // its sequence stopped waiting (fetch_timeout_s)
    std::chrono::steady_clock::time_point started;
  };

  const BlockHash& HashOfBlock(KvSequence* seq, std::span<const int32_t> token_ids, size_t i);
  BlockHash ParentOf(const KvSequence& seq, size_t i) const;
  void Pin(int32_t block_id);
  void Unpin(int32_t block_id);
  // Counts a deferred lookup as a miss (its load failed, or the sequence was freed first).
  void DropDeferredLookup(KvSequence* seq);
  void StoreToHost(int32_t block_id, const BlockHash& key, const BlockHash& parent,
                   std::span<const int32_t> token_ids);

  BlockPool pool_;
  bool enable_prefix_caching_;
  std::string cache_namespace_;
  HostTier* host_;
  TierWorker* lower_;
  int64_t queries_ = 0;
  int64_t hits_ = 0;
  int64_t device_hits_ = 0;
  TierStats host_stats_;
  double fetch_timeout_s_;
  int64_t fetch_timeouts_ = 0;
  // Per host record: the lower tier (index in lower_->tiers()) a fetch filled it from, until a
  // request's lookup first uses it (-1: none, or counted already).
  std::vector<int8_t> record_source_;
  std::vector<int64_t> lower_hit_tokens_;  // per lower tier
  std::vector<int32_t> pins_;              // per device block: references held by transfers
  std::map<uint64_t, Group> groups_;
  std::vector<uint64_t> untaken_;
  uint64_t open_store_group_ = 0;  // the store group collecting this step's blocks (0: none)
  std::unordered_map<uint64_t, Status> failed_loads_;  // load group → its error
  // Keys of the blocks in store groups not yet completed: a block computed twice (by sequences
  // with the same prefix in one step, or again before its store completed) is stored once.
  std::unordered_set<BlockHash, BlockHashHasher> storing_;
  std::map<uint64_t, Fetch> fetches_;
  std::unordered_set<uint64_t> full_fetches_;  // done fetches that got every block asked for
  uint64_t next_id_ = 1;
  std::vector<TierCompletion> completions_;
  mutable std::vector<int32_t> scratch_refs_;
};

}  // namespace kiln
