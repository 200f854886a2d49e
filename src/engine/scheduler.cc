#include "engine/scheduler.h"

#include <algorithm>

#include "common/check.h"

namespace kiln {

Scheduler::Scheduler(const SchedulerConfig& config, KvCacheManager* kv) : config_(config), kv_(kv) {
  running_.reserve(static_cast<size_t>(config.max_num_seqs));
  out_.scheduled.reserve(static_cast<size_t>(config.max_num_seqs));
}

void Scheduler::AddRequest(RequestState* request) {
  request->status = RequestStatus::kWaiting;
  waiting_.push_back(request);
}

void Scheduler::Add(RequestState* r, int num_tokens) {
  r->scheduled_index = static_cast<int>(out_.scheduled.size());
  out_.scheduled.push_back({r, num_tokens});
  out_.num_scheduled_tokens += num_tokens;
  budget_ -= num_tokens;
}

void Scheduler::PreemptNewest() {
  RequestState* victim = running_.back();
  running_.pop_back();
  if (victim->scheduled_index >= 0) {  // already scheduled this step: take it back
    const size_t idx = static_cast<size_t>(victim->scheduled_index);
    const int n = out_.scheduled[idx].num_tokens;
    out_.scheduled.erase(out_.scheduled.begin() + static_cast<ptrdiff_t>(idx));
    for (size_t j = idx; j < out_.scheduled.size(); ++j) {
      out_.scheduled[j].request->scheduled_index = static_cast<int>(j);
    }
    out_.num_scheduled_tokens -= n;
    budget_ += n;
    victim->scheduled_index = -1;
  }
  kv_->Free(&victim->kv);
  victim->num_computed_tokens = 0;
  victim->hidden_states.clear();
  victim->status = RequestStatus::kWaiting;
  ++victim->num_preemptions;
  ++num_preemptions_;
  waiting_.push_front(victim);
  out_.preempted.push_back(victim);
}

const SchedulerOutput& Scheduler::Schedule() {
  out_.scheduled.clear();
  out_.preempted.clear();
  out_.num_scheduled_tokens = 0;
  budget_ = config_.max_num_batched_tokens;

  // Running requests: decodes first, then prefill chunks.
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t i = 0; i < running_.size() && budget_ > 0; ++i) {
      RequestState* r = running_[i];
      const int remaining = r->num_tokens_to_compute();
      if (remaining <= 0 || (pass == 0) != (remaining == 1) || r->scheduled_index >= 0) continue;
      const int n = std::min(remaining, budget_);
      if (!config_.enable_chunked_prefill && n < remaining) continue;
      bool preempted_self = false;
      while (!kv_->AllocateSlots(&r->kv, r->num_computed_tokens, n)) {
        const bool is_self = running_.back() == r;
        PreemptNewest();
        if (is_self) {
          preempted_self = true;
          break;
        }
      }
      if (!preempted_self) Add(r, n);
    }
  }

  // Waiting requests.
  while (!waiting_.empty() && budget_ > 0 && out_.preempted.empty() &&
         static_cast<int>(running_.size()) < config_.max_num_seqs) {
    RequestState* r = waiting_.front();
    KILN_DCHECK(r->num_computed_tokens == 0);
    // Preempted while its last token was being sampled: admitted once that token is known.
    if (r->has_pending_token()) break;
    int cached = 0;
    hit_blocks_.clear();
    const bool needs_every_row = r->kind == RequestKind::kEmbed && r->return_all_hidden;
    if (!needs_every_row) cached = kv_->FindCachedPrefix(&r->kv, r->token_ids, &hit_blocks_);
    const int remaining = r->num_tokens() - cached;
    const int n = std::min(remaining, budget_);
    if (!config_.enable_chunked_prefill && n < remaining) break;
    if (!kv_->AllocateSlots(&r->kv, cached, n, hit_blocks_)) break;
    kv_->RecordLookup(r->num_tokens(), cached);
    waiting_.pop_front();
    r->num_computed_tokens = cached;
    if (r->num_cached_tokens < 0) r->num_cached_tokens = cached;
    r->status = RequestStatus::kRunning;
    running_.push_back(r);
    Add(r, n);
  }

  for (const ScheduledRequest& s : out_.scheduled) s.request->scheduled_index = -1;
  return out_;
}

void Scheduler::RemoveRequest(RequestState* request) {
  if (request->status == RequestStatus::kRunning) {
    auto it = std::find(running_.begin(), running_.end(), request);
    KILN_CHECK(it != running_.end());
    running_.erase(it);
  } else if (request->status == RequestStatus::kWaiting) {
    auto it = std::find(waiting_.begin(), waiting_.end(), request);
    KILN_CHECK(it != waiting_.end());
    waiting_.erase(it);
  }
  kv_->Free(&request->kv);
  request->status = RequestStatus::kFinished;
}

void Scheduler::RemoveFinished() {
  std::erase_if(running_,
                [](const RequestState* r) { return r->status == RequestStatus::kFinished; });
}

}  // namespace kiln
