#include "kv/tier_worker.h"

#include <chrono>

#include "common/check.h"
#include "kv/block_record.h"

namespace kiln {
namespace {

double Since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

TierWorker::TierWorker(const TierWorkerOptions& options, std::vector<std::unique_ptr<KvTier>> tiers)
    : options_(options), tiers_(std::move(tiers)) {
  KILN_CHECK_GT(options_.record_bytes, 0);
  stats_.resize(tiers_.size());
  for (size_t t = 0; t < tiers_.size(); ++t) stats_[t].name = tiers_[t]->name();
  thread_ = std::thread([this] { Run(); });
}

TierWorker::~TierWorker() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

bool TierWorker::EnqueueWrite(TierWriteJob job) {
  std::lock_guard<std::mutex> lock(mu_);
  if (writes_.size() >= options_.max_queued_writes) {
    for (TierStats& s : stats_) ++s.dropped_writes;
    return false;
  }
  writes_.push_back(std::move(job));
  ++pending_;
  cv_.notify_one();
  return true;
}

void TierWorker::EnqueueFetch(TierFetchJob job) {
  std::lock_guard<std::mutex> lock(mu_);
  fetches_.push_back(std::move(job));
  ++pending_;
  cv_.notify_one();
}

void TierWorker::Poll(std::vector<TierCompletion>* out) {
  std::lock_guard<std::mutex> lock(mu_);
  pending_ -= static_cast<int64_t>(completions_.size());
  out->insert(out->end(), completions_.begin(), completions_.end());
  completions_.clear();
}

int64_t TierWorker::num_pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_;
}

bool TierWorker::MayContain(const BlockHash& key) const {
  for (const auto& t : tiers_) {
    if (t->MayContain(key)) return true;
  }
  return false;
}

std::vector<TierStats> TierWorker::Stats() const {
  std::vector<TierStats> out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    out = stats_;
  }
  for (size_t t = 0; t < tiers_.size(); ++t) tiers_[t]->FillStats(&out[t]);
  return out;
}

void TierWorker::Run() {
  for (;;) {
    TierFetchJob fetch;
    TierWriteJob write;
    bool is_fetch = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !fetches_.empty() || !writes_.empty(); });
      if (stop_) return;
      if (!fetches_.empty()) {
        fetch = std::move(fetches_.front());
        fetches_.pop_front();
        is_fetch = true;
      } else {
        write = std::move(writes_.front());
        writes_.pop_front();
      }
    }
    TierCompletion done;
    if (is_fetch) {
      DoFetch(fetch, &done);
    } else {
      DoWrite(write);
      done.host_record = write.host_record;
    }
    std::lock_guard<std::mutex> lock(mu_);
    completions_.push_back(done);
  }
}

void TierWorker::DoFetch(TierFetchJob& job, TierCompletion* done) {
  done->is_fetch = true;
  done->fetch_id = job.id;
  const auto t_job = std::chrono::steady_clock::now();
  const int bs = options_.block_size;
  const size_t n = job.keys.size();
  std::vector<int64_t> queried(tiers_.size(), 0), blocks(tiers_.size(), 0);
  std::vector<int64_t> errors(tiers_.size(), 0);
  std::vector<int64_t> bytes(tiers_.size(), 0);
  std::vector<double> seconds(tiers_.size(), 0.0);
  size_t got = 0;
  for (; got < n; ++got) {
    BlockRecordKey key{
        job.keys[got], job.parents[got], options_.namespace_hash,
        std::span<const int32_t>(job.token_ids.data() + got * bs, static_cast<size_t>(bs))};
    bool found = false;
    for (size_t t = 0; t < tiers_.size() && !found; ++t) {
      if (!tiers_[t]->MayContain(key.key)) continue;
      queried[t] += bs;
      const auto t0 = std::chrono::steady_clock::now();
      Status s = tiers_[t]->Get(key.key, &buf_);
      if (s.ok()) {
        s = DecodeBlockRecord(
            buf_, key,
            std::span<uint8_t>(job.payloads[got], static_cast<size_t>(options_.record_bytes)));
        if (s.ok()) {
          found = true;
          done->sources.push_back(static_cast<int>(t));
          ++blocks[t];
          bytes[t] += static_cast<int64_t>(buf_.size());
          seconds[t] += Since(t0);
        } else {
          ++errors[t];
          tiers_[t]->Remove(key.key);  // a corrupt record is a miss, and goes
        }
      } else if (s.code() != StatusCode::kNotFound) {
        ++errors[t];
      }
    }
    if (!found) break;
  }
  done->num_fetched = static_cast<int>(got);
  const double latency = Since(t_job);
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t t = 0; t < tiers_.size(); ++t) {
    TierStats& st = stats_[t];
    st.query_tokens += queried[t];
    st.bytes_loaded += bytes[t];
    st.load_seconds += seconds[t];
    st.errors += errors[t];
    if (blocks[t] > 0) {
      ++st.num_loads;
      st.load_latency_seconds += latency;
    }
  }
}

void TierWorker::DoWrite(const TierWriteJob& job) {
  BlockRecordKey key{job.key, job.parent, options_.namespace_hash, job.token_ids};
  EncodeBlockRecord(
      key, std::span<const uint8_t>(job.payload, static_cast<size_t>(options_.record_bytes)),
      &buf_);
  for (size_t t = 0; t < tiers_.size(); ++t) {
    const auto t0 = std::chrono::steady_clock::now();
    const StatusOr<bool> stored = tiers_[t]->Put(job.key, buf_);
    const Status& s = stored.status();
    const double dt = Since(t0);
    std::lock_guard<std::mutex> lock(mu_);
    if (s.ok()) {
      if (*stored) {  // (false: the tier already held it; nothing was written)
        stats_[t].bytes_stored += static_cast<int64_t>(buf_.size());
        stats_[t].store_seconds += dt;
      }
    } else if (s.code() == StatusCode::kUnavailable || s.code() == StatusCode::kResourceExhausted) {
      ++stats_[t].dropped_writes;
    } else {
      ++stats_[t].errors;
    }
  }
}

}  // namespace kiln
