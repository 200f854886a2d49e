#include "kv/kv_cache_manager.h"

#include <algorithm>

#include "common/check.h"
#include "common/logging.h"

namespace kiln {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int PrefixHit::num_host_blocks() const {
  return static_cast<int>(
      std::count_if(host_records.begin(), host_records.end(), [](int64_t r) { return r >= 0; }));
}

KvCacheManager::KvCacheManager(const KvCacheOptions& options, HostTier* host, TierWorker* lower)
    : pool_(options.num_blocks, options.block_size, options.enable_prefix_caching),
      enable_prefix_caching_(options.enable_prefix_caching),
      cache_namespace_(options.cache_namespace),
      host_(host),
      fetch_timeout_s_(options.fetch_timeout_s),
      lower_(lower) {
  KILN_CHECK(lower_ == nullptr || host_ != nullptr) << "lower tiers need a host tier";
  if (host_ != nullptr) KILN_CHECK_EQ(host_->block_size(), options.block_size);
  pins_.assign(static_cast<size_t>(options.num_blocks), 0);
  host_stats_.name = "host";
  if (host_ != nullptr) record_source_.assign(static_cast<size_t>(host_->num_records()), -1);
  if (lower_ != nullptr) lower_hit_tokens_.assign(lower_->tiers().size(), 0);
}

const BlockHash& KvCacheManager::HashOfBlock(KvSequence* seq, std::span<const int32_t> token_ids,
                                             size_t i) {
  const size_t bs = static_cast<size_t>(pool_.block_size());
  while (seq->block_hashes.size() <= i) {
    const size_t j = seq->block_hashes.size();
    const BlockHash parent = ParentOf(*seq, j);
    seq->block_hashes.push_back(ChainBlockHash(parent, token_ids.subspan(j * bs, bs)));
  }
  return seq->block_hashes[i];
}

BlockHash KvCacheManager::ParentOf(const KvSequence& seq, size_t i) const {
  return i == 0 ? RootBlockHash(cache_namespace_, seq.extra_keys) : seq.block_hashes[i - 1];
}

void KvCacheManager::Pin(int32_t block_id) {
  pool_.Ref(block_id);
  ++pins_[static_cast<size_t>(block_id)];
}

void KvCacheManager::Unpin(int32_t block_id) {
  KILN_CHECK_GT(pins_[static_cast<size_t>(block_id)], 0);
  --pins_[static_cast<size_t>(block_id)];
  pool_.Unref(block_id);
}

int KvCacheManager::FindCachedPrefix(KvSequence* seq, std::span<const int32_t> token_ids,
                                     PrefixHit* hit) {
  KILN_CHECK(seq->block_table.empty()) << "prefix lookup for a sequence that holds blocks";
  hit->Clear();
  if (!enable_prefix_caching_ || token_ids.empty()) return 0;
  const size_t bs = static_cast<size_t>(pool_.block_size());
  const size_t max_blocks = (token_ids.size() - 1) / bs;
  for (size_t i = 0; i < max_blocks; ++i) {
    const BlockHash h = HashOfBlock(seq, token_ids, i);
    const BlockHash parent = ParentOf(*seq, i);
    const auto tokens = token_ids.subspan(i * bs, bs);
    const int32_t id = pool_.Find(h, tokens, parent);
    if (id >= 0) {
      hit->device_blocks.push_back(id);
      hit->host_records.push_back(-1);
      continue;
    }
    const int64_t r = host_ != nullptr ? host_->Find(h, tokens, parent) : -1;
    if (r < 0) break;
    hit->device_blocks.push_back(-1);
    hit->host_records.push_back(r);
  }
  return static_cast<int>(static_cast<size_t>(hit->num_blocks()) * bs);
}

bool KvCacheManager::AllocateSlots(KvSequence* seq, int num_computed_tokens, int num_new_tokens,
                                   const PrefixHit* hit) {
  const int n_hit = hit != nullptr ? hit->num_blocks() : 0;
  const int n_host = hit != nullptr ? hit->num_host_blocks() : 0;
  int64_t num_revived = 0;
  if (n_hit > 0) {
    KILN_CHECK(seq->block_table.empty()) << "cached blocks for a sequence that holds blocks";
    KILN_CHECK_EQ(int64_t{n_hit} * pool_.block_size(), num_computed_tokens);
    for (int32_t id : hit->device_blocks) {
      if (id >= 0 && pool_.block(id).ref_count == 0) ++num_revived;
    }
  }
  const int64_t have = static_cast<int64_t>(seq->block_table.size()) + n_hit;
  const int64_t need =
      std::max<int64_t>(0, BlocksFor(int64_t{num_computed_tokens} + num_new_tokens) - have);
  if (need + n_host > pool_.num_free_blocks() - num_revived) return false;
  if (n_hit > 0) {
    // Device hits are referenced first, so that allocating the load targets cannot evict them.
    seq->block_table.assign(static_cast<size_t>(n_hit), -1);
    for (int i = 0; i < n_hit; ++i) {
      const int32_t id = hit->device_blocks[static_cast<size_t>(i)];
      if (id < 0) continue;
      pool_.Ref(id);
      seq->block_table[static_cast<size_t>(i)] = id;
    }
    Group load;
    std::vector<int32_t> one;
    for (int i = 0; i < n_hit; ++i) {
      const int64_t rec = hit->host_records[static_cast<size_t>(i)];
      if (rec < 0) continue;
      one.clear();
      KILN_CHECK(pool_.Allocate(1, &one));
      seq->block_table[static_cast<size_t>(i)] = one[0];
      host_->Pin(rec);
      host_->Touch(rec);
      load.transfers.push_back({one[0], rec});
    }
    if (load.transfers.empty()) {
      seq->num_registered_blocks = n_hit;
    } else {
      const uint64_t id = next_id_++;
      load.created = std::chrono::steady_clock::now();
      groups_.emplace(id, std::move(load));
      untaken_.push_back(id);
      seq->load_group = id;
      seq->num_loaded_blocks = n_hit;
      seq->num_registered_blocks = 0;
    }
  }
  if (need > 0) KILN_CHECK(pool_.Allocate(need, &seq->block_table));
  return true;
}

bool KvCacheManager::LoadPending(const KvSequence& seq) const {
  return seq.load_group != 0 && groups_.count(seq.load_group) != 0;
}

StatusOr<int> KvCacheManager::FinishLoad(KvSequence* seq, std::span<const int32_t> token_ids) {
  KILN_CHECK(seq->load_group != 0 && !LoadPending(*seq));
  auto failed = failed_loads_.find(seq->load_group);
  seq->load_group = 0;
  if (failed != failed_loads_.end()) {
    DropDeferredLookup(seq);
    Status error = std::move(failed->second);
    failed_loads_.erase(failed);
    return error;
  }
  if (seq->deferred_query_tokens > 0) {  // the load succeeded: the lookup was a hit
    RecordLookup(seq->deferred_query_tokens, seq->deferred_hit);
    seq->deferred_query_tokens = 0;
    seq->deferred_hit.Clear();
  }
  const size_t bs = static_cast<size_t>(pool_.block_size());
  for (size_t i = 0; i < static_cast<size_t>(seq->num_loaded_blocks); ++i) {
    const BlockHash h = HashOfBlock(seq, token_ids, i);
    pool_.Cache(seq->block_table[i], h, token_ids.subspan(i * bs, bs), ParentOf(*seq, i));
  }
  seq->num_registered_blocks = seq->num_loaded_blocks;
  return static_cast<int>(static_cast<size_t>(seq->num_loaded_blocks) * bs);
}

bool KvCacheManager::StartFetch(KvSequence* seq, std::span<const int32_t> token_ids) {
  if (lower_ == nullptr || !enable_prefix_caching_ || token_ids.empty() || FetchPending(*seq)) {
    return false;
  }
  if (seq->fetch_id != 0 && full_fetches_.erase(seq->fetch_id) == 0) return false;
  // Past the request's wait (all its fetches together), no further fetch.
  if (seq->num_fetches > 0 && fetch_timeout_s_ >= 0 &&
      SecondsSince(seq->first_fetch) > fetch_timeout_s_) {
    return false;
  }
  const size_t bs = static_cast<size_t>(pool_.block_size());
  const size_t max_blocks = (token_ids.size() - 1) / bs;
  std::vector<int64_t> host_hits;  // pinned while records are reserved, so they stay
  size_t first = 0;
  for (; first < max_blocks; ++first) {
    const BlockHash h = HashOfBlock(seq, token_ids, first);
    const auto tokens = token_ids.subspan(first * bs, bs);
    const BlockHash parent = ParentOf(*seq, first);
    if (pool_.Find(h, tokens, parent) >= 0) continue;
    const int64_t r = host_->Find(h, tokens, parent);
    if (r < 0) break;
    host_->Pin(r);
    host_hits.push_back(r);
  }
  bool started = false;
  if (first < max_blocks && lower_->MayContain(seq->block_hashes[first])) {
    Fetch fetch;
    TierFetchJob job;
    const int64_t ask = seq->num_fetches == 0 ? 4 : int64_t{64} << std::min(seq->num_fetches, 8);
    const size_t limit = std::min(
        max_blocks,
        first + static_cast<size_t>(std::max<int64_t>(1, std::min(ask, host_->num_records() / 2))));
    for (size_t i = first; i < limit; ++i) {
      const int64_t rec = host_->Reserve();
      if (rec < 0) break;
      record_source_[static_cast<size_t>(rec)] = -1;
      const BlockHash h = HashOfBlock(seq, token_ids, i);
      const auto tokens = token_ids.subspan(i * bs, bs);
      fetch.records.push_back(rec);
      fetch.metas.push_back({h, ParentOf(*seq, i), {tokens.begin(), tokens.end()}});
      job.keys.push_back(h);
      job.parents.push_back(fetch.metas.back().parent);
      job.token_ids.insert(job.token_ids.end(), tokens.begin(), tokens.end());
      job.host_records.push_back(rec);
      job.payloads.push_back(host_->record(rec));
    }
    if (!fetch.records.empty()) {
      fetch.started = std::chrono::steady_clock::now();
      if (seq->num_fetches == 0) seq->first_fetch = fetch.started;
      // A timeout of 0: nobody waits (the fetch fills the host tier for later requests).
      fetch.timed_out = fetch_timeout_s_ == 0;
      job.id = next_id_++;
      seq->fetch_id = job.id;
      ++seq->num_fetches;
      fetches_.emplace(job.id, std::move(fetch));
      lower_->EnqueueFetch(std::move(job));
      started = fetch_timeout_s_ != 0;
    }
  }
  for (int64_t r : host_hits) host_->Unpin(r);
  return started;
}

bool KvCacheManager::FetchPending(const KvSequence& seq) {
  if (seq.fetch_id == 0) return false;
  auto it = fetches_.find(seq.fetch_id);
  if (it == fetches_.end()) return false;
  Fetch& f = it->second;
  if (f.timed_out) return false;
  if (fetch_timeout_s_ < 0 || SecondsSince(seq.first_fetch) <= fetch_timeout_s_) return true;
  f.timed_out = true;
  ++fetch_timeouts_;
  if ((fetch_timeouts_ & (fetch_timeouts_ - 1)) == 0) {  // 1st, 2nd, 4th, ...: no log flood
    KILN_LOG(WARNING) << "a lower-tier KV fetch took over " << fetch_timeout_s_
                      << " s: its request runs without it (" << fetch_timeouts_
                      << " such fetches so far)";
  }
  return false;
}

void KvCacheManager::StoreToHost(int32_t block_id, const BlockHash& key, const BlockHash& parent,
                                 std::span<const int32_t> token_ids) {
  if (host_ == nullptr || host_->Contains(key) || storing_.count(key) != 0) return;
  const int64_t rec = host_->Reserve();
  if (rec < 0) {
    ++host_stats_.dropped_writes;
    return;
  }
  record_source_[static_cast<size_t>(rec)] = -1;
  storing_.insert(key);
  if (open_store_group_ == 0) {
    open_store_group_ = next_id_++;
    Group g;
    g.to_host = true;
    g.created = std::chrono::steady_clock::now();
    groups_.emplace(open_store_group_, std::move(g));
    untaken_.push_back(open_store_group_);
  }
  Group& g = groups_.at(open_store_group_);
  g.transfers.push_back({block_id, rec});
  g.metas.push_back({key, parent, {token_ids.begin(), token_ids.end()}});
  Pin(block_id);
}

void KvCacheManager::CacheComputedBlocks(KvSequence* seq, std::span<const int32_t> token_ids,
                                         int num_computed_tokens) {
  if (!enable_prefix_caching_) return;
  const size_t bs = static_cast<size_t>(pool_.block_size());
  const size_t num_full = static_cast<size_t>(num_computed_tokens) / bs;
  KILN_CHECK_LE(num_full, seq->block_table.size());
  for (size_t i = static_cast<size_t>(seq->num_registered_blocks); i < num_full; ++i) {
    const BlockHash h = HashOfBlock(seq, token_ids, i);
    const BlockHash parent = ParentOf(*seq, i);
    const auto tokens = token_ids.subspan(i * bs, bs);
    pool_.Cache(seq->block_table[i], h, tokens, parent);
    StoreToHost(seq->block_table[i], h, parent, tokens);
  }
  if (num_full > static_cast<size_t>(seq->num_registered_blocks)) {
    seq->num_registered_blocks = static_cast<int>(num_full);
  }
}

void KvCacheManager::DeferLookup(KvSequence* seq, int64_t num_query_tokens, const PrefixHit& hit) {
  seq->deferred_query_tokens = num_query_tokens;
  seq->deferred_hit = hit;
}

void KvCacheManager::DropDeferredLookup(KvSequence* seq) {
  if (seq->deferred_query_tokens <= 0) return;
  RecordLookup(seq->deferred_query_tokens, PrefixHit{});  // a miss: nothing of the hit was used
  seq->deferred_query_tokens = 0;
  seq->deferred_hit.Clear();
}

void KvCacheManager::Free(KvSequence* seq) {
  DropDeferredLookup(seq);
  if (LoadPending(*seq)) {  // the copy still writes these blocks: pinned until it completes
    Group& g = groups_.at(seq->load_group);
    for (const BlockTransfer& t : g.transfers) {
      Pin(t.device_block);
      g.orphans.push_back(t.device_block);
    }
  } else if (seq->load_group != 0) {
    failed_loads_.erase(seq->load_group);
  }
  seq->load_group = 0;
  seq->num_loaded_blocks = 0;
  full_fetches_.erase(seq->fetch_id);
  if (auto f = fetches_.find(seq->fetch_id); seq->fetch_id != 0 && f != fetches_.end()) {
    f->second.orphaned = true;
  }
  for (auto it = seq->block_table.rbegin(); it != seq->block_table.rend(); ++it) pool_.Unref(*it);
  seq->block_table.clear();
  seq->num_registered_blocks = 0;
}

void KvCacheManager::TakeCopyGroups(std::vector<KvCopyGroup>* out) {
  for (uint64_t id : untaken_) {
    const Group& g = groups_.at(id);
    out->push_back({id, g.to_host, g.transfers});
  }
  untaken_.clear();
  open_store_group_ = 0;
}

void KvCacheManager::CompleteCopyGroup(uint64_t id, const Status& status, double seconds) {
  const bool ok = status.ok();
  auto it = groups_.find(id);
  KILN_CHECK(it != groups_.end()) << "unknown copy group " << id;
  Group& g = it->second;
  const int64_t bytes = static_cast<int64_t>(g.transfers.size()) * host_->record_bytes();
  if (g.to_host) {
    for (size_t k = 0; k < g.transfers.size(); ++k) {
      const BlockTransfer& t = g.transfers[k];
      const StoreMeta& m = g.metas[k];
      storing_.erase(m.key);
      Unpin(t.device_block);
      if (ok && host_->Publish(t.host_record, m.key, m.parent, m.token_ids) && lower_ != nullptr) {
        host_->Pin(t.host_record);  // until the lower tiers have it
        TierWriteJob job{t.host_record, m.key, m.parent, m.token_ids, host_->record(t.host_record)};
        if (!lower_->EnqueueWrite(std::move(job))) host_->Unpin(t.host_record);
      }
      host_->Unpin(t.host_record);
    }
    if (ok) {
      host_stats_.bytes_stored += bytes;
      host_stats_.store_seconds += seconds;
    }
  } else {
    for (const BlockTransfer& t : g.transfers) host_->Unpin(t.host_record);
    for (int32_t b : g.orphans) Unpin(b);
    if (ok) {
      host_stats_.bytes_loaded += bytes;
      host_stats_.load_seconds += seconds;
      ++host_stats_.num_loads;
      host_stats_.load_latency_seconds += SecondsSince(g.created);
    } else if (g.orphans.empty()) {
      failed_loads_.emplace(id, status);
    }
  }
  if (!ok) ++host_stats_.errors;
  groups_.erase(it);
}

void KvCacheManager::PollLowerTiers() {
  if (lower_ == nullptr) return;
  completions_.clear();
  lower_->Poll(&completions_);
  for (const TierCompletion& c : completions_) {
    if (!c.is_fetch) {
      host_->Unpin(c.host_record);
      continue;
    }
    auto it = fetches_.find(c.fetch_id);
    KILN_CHECK(it != fetches_.end());
    const Fetch& f = it->second;
    for (size_t j = 0; j < f.records.size(); ++j) {
      if (static_cast<int>(j) < c.num_fetched &&
          host_->Publish(f.records[j], f.metas[j].key, f.metas[j].parent, f.metas[j].token_ids)) {
        record_source_[static_cast<size_t>(f.records[j])] = static_cast<int8_t>(c.sources[j]);
      }
      host_->Unpin(f.records[j]);
    }
    if (!f.orphaned && c.num_fetched == static_cast<int>(f.records.size())) {
      full_fetches_.insert(c.fetch_id);
    }
    fetches_.erase(it);
  }
}

bool KvCacheManager::has_pending_transfers() const {
  if (!groups_.empty()) return true;
  for (const auto& [id, f] : fetches_) {
    if (!f.timed_out && !f.orphaned) return true;
  }
  return false;
}

bool KvCacheManager::has_pending_io() const {
  return !groups_.empty() || !fetches_.empty() || (lower_ != nullptr && lower_->num_pending() > 0);
}

void KvCacheManager::RecordLookup(int64_t num_query_tokens, const PrefixHit& hit) {
  const int64_t bs = pool_.block_size();
  const int64_t hit_tokens = int64_t{hit.num_blocks()} * bs;
  const int64_t device_tokens = int64_t{hit.num_blocks() - hit.num_host_blocks()} * bs;
  queries_ += num_query_tokens;
  hits_ += hit_tokens;
  device_hits_ += device_tokens;
  if (host_ == nullptr) return;
  host_stats_.query_tokens += num_query_tokens - device_tokens;
  for (int64_t rec : hit.host_records) {
    if (rec < 0) continue;
    int8_t& source = record_source_[static_cast<size_t>(rec)];
    if (source >= 0) {  // fetched for a request: a hit of the tier it came from, this once
      lower_hit_tokens_[static_cast<size_t>(source)] += bs;
      source = -1;
    } else {
      host_stats_.hit_tokens += bs;
    }
  }
}

std::vector<TierStats> KvCacheManager::TierMetrics() const {
  std::vector<TierStats> out;
  TierStats device;
  device.name = "device";
  device.query_tokens = queries_;
  device.hit_tokens = device_hits_;
  out.push_back(device);
  if (host_ != nullptr) {
    TierStats h = host_stats_;
    h.capacity_bytes = host_->num_records() * host_->record_bytes();
    h.used_bytes = host_->num_published() * host_->record_bytes();
    out.push_back(h);
  }
  if (lower_ != nullptr) {
    std::vector<TierStats> lower = lower_->Stats();
    for (size_t t = 0; t < lower.size(); ++t) {
      lower[t].hit_tokens = lower_hit_tokens_[t];
      out.push_back(std::move(lower[t]));
    }
  }
  return out;
}

Status KvCacheManager::CheckInvariants(std::span<const KvSequence* const> live) const {
  KILN_RETURN_IF_ERROR(pool_.CheckInvariants());
  if (host_ != nullptr) KILN_RETURN_IF_ERROR(host_->CheckInvariants());
  scratch_refs_.assign(pins_.begin(), pins_.end());
  for (const KvSequence* seq : live) {
    for (int32_t id : seq->block_table) {
      if (id < 0 || id >= pool_.num_blocks()) {
        return Status::Internal("KvCacheManager: block id " + std::to_string(id) + " out of range");
      }
      ++scratch_refs_[static_cast<size_t>(id)];
    }
  }
  for (int64_t id = 0; id < pool_.num_blocks(); ++id) {
    const int32_t expected = scratch_refs_[static_cast<size_t>(id)];
    const int32_t actual = pool_.block(static_cast<int32_t>(id)).ref_count;
    if (expected != actual) {
      return Status::Internal("KvCacheManager: block " + std::to_string(id) + " ref_count " +
                              std::to_string(actual) + " but " + std::to_string(expected) +
                              " block tables and transfers hold it");
    }
  }
  return Status::Ok();
}

}  // namespace kiln
