#include "engine/scheduler.h"

#include <algorithm>
#include <limits>

#include "common/check.h"
#include "common/logging.h"

namespace kiln {

PromptLogprobSpan PromptLogprobRows(const RequestState& r, int start, int num_tokens) {
  if (!r.wants_prompt_logprobs()) return {};
  const int first = std::max(start + 1, r.next_prompt_logprob);
  const int last = std::min(start + num_tokens, r.num_prompt_tokens - 1);
  return {first, std::max(0, last - first + 1)};
}

bool SamplesAfter(const RequestState& r, int start, int num_tokens) {
  // (an embedding has no logits; a generation of max_tokens 0 only prefills)
  return start + num_tokens == r.num_tokens() && r.kind != RequestKind::kEmbed &&
         !(r.kind == RequestKind::kGenerate && r.sampling.max_tokens == 0);
}

int LogitsRowsFor(const RequestState& r, int start, int num_tokens) {
  return PromptLogprobRows(r, start, num_tokens).count +
         (SamplesAfter(r, start, num_tokens) ? 1 : 0);
}

Scheduler::Scheduler(const SchedulerConfig& config, KvCacheManager* kv) : config_(config), kv_(kv) {
  running_.reserve(static_cast<size_t>(config.max_num_seqs));
  out_.scheduled.reserve(static_cast<size_t>(config.max_num_seqs));
}

void Scheduler::InsertWaiting(RequestState* r) {
  auto later = std::upper_bound(waiting_.begin(), waiting_.end(), r,
                                [](const RequestState* a, const RequestState* b) {
                                  if (a->priority != b->priority) return a->priority < b->priority;
                                  return a->queue_seq < b->queue_seq;
                                });
  waiting_.insert(later, r);
}

void Scheduler::AddRequest(RequestState* request) {
  request->status = RequestStatus::kWaiting;
  if (request->queue_seq < 0) request->queue_seq = next_queue_seq_++;
  InsertWaiting(request);
}

int Scheduler::FitRows(const RequestState& r, int start, int want) const {
  if (LogitsRowsFor(r, start, want) <= rows_left_) return want;
  // Rows grow with n: the largest n that fits.
  int lo = 0, hi = want;
  while (lo < hi) {
    const int mid = lo + (hi - lo + 1) / 2;
    if (LogitsRowsFor(r, start, mid) <= rows_left_) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

void Scheduler::Add(RequestState* r, int num_tokens) {
  rows_left_ -= LogitsRowsFor(*r, r->num_computed_tokens, num_tokens);
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
    rows_left_ += LogitsRowsFor(*victim, victim->num_computed_tokens, n);
    victim->scheduled_index = -1;
  }
  kv_->Free(&victim->kv);
  victim->num_computed_tokens = 0;
  victim->hidden_states.clear();
  victim->status = RequestStatus::kWaiting;
  ++victim->num_preemptions;
  ++num_preemptions_;
  InsertWaiting(victim);
  out_.preempted.push_back(victim);
}

void Scheduler::PromoteLoaded() {
  for (size_t i = 0; i < loading_.size();) {
    RequestState* r = loading_[i];
    if (kv_->LoadPending(r->kv)) {
      ++i;
      continue;
    }
    StatusOr<int> computed = kv_->FinishLoad(&r->kv, r->token_ids);
    loading_.erase(loading_.begin() + static_cast<ptrdiff_t>(i));
    if (!computed.ok()) {
      // The blocks hold garbage (nothing of them was cached): recompute the whole prompt instead
      // of failing the request over a cache.
      KILN_LOG(WARNING) << "loading the cached prefix of request " << r->request_id << " failed ("
                        << computed.status().ToString() << "): recomputing its prompt";
      kv_->Free(&r->kv);
      r->num_computed_tokens = 0;
      r->num_cached_tokens = 0;
      r->skip_prefix_cache = true;
      r->status = RequestStatus::kWaiting;
      InsertWaiting(r);
      continue;
    }
    r->num_computed_tokens = *computed;
    r->status = RequestStatus::kRunning;
    running_.push_back(r);
  }
}

const SchedulerOutput& Scheduler::Schedule() {
  out_.scheduled.clear();
  out_.preempted.clear();
  out_.copies.clear();
  out_.num_scheduled_tokens = 0;
  budget_ = config_.max_num_batched_tokens;
  rows_left_ =
      config_.max_logits_rows > 0 ? config_.max_logits_rows : std::numeric_limits<int>::max();
  PromoteLoaded();

  // Running requests: decodes first, then prefill chunks.
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t i = 0; i < running_.size() && budget_ > 0; ++i) {
      RequestState* r = running_[i];
      const int remaining = r->num_tokens_to_compute();
      if (remaining <= 0 || (pass == 0) != (remaining == 1) || r->scheduled_index >= 0) continue;
      const int n = FitRows(*r, r->num_computed_tokens, std::min(remaining, budget_));
      if (n == 0 || (!config_.enable_chunked_prefill && n < remaining)) continue;
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
  for (size_t w = 0; w < waiting_.size() && budget_ > 0 && out_.preempted.empty() &&
                     static_cast<int>(running_.size() + loading_.size()) < config_.max_num_seqs;) {
    RequestState* r = waiting_[w];
    KILN_DCHECK(r->num_computed_tokens == 0);
    // Preempted while its last token was being sampled: admitted once that token is known.
    if (r->has_pending_token()) break;
    // Every prompt row is computed (no prefix-cache start) for all-row embeddings, prompt
    // logprobs, and after a failed load.
    const bool needs_every_row = (r->kind == RequestKind::kEmbed && r->return_all_hidden) ||
                                 r->wants_prompt_logprobs() || r->skip_prefix_cache;
    // A fetch from the lower tiers in flight (or started now): pass over it meanwhile.
    if (!needs_every_row && (kv_->FetchPending(r->kv) || kv_->StartFetch(&r->kv, r->token_ids))) {
      ++w;
      continue;
    }
    int cached = 0;
    hit_.Clear();
    if (!needs_every_row) cached = kv_->FindCachedPrefix(&r->kv, r->token_ids, &hit_);
    const int num_host_blocks = hit_.num_host_blocks();
    const int remaining = r->num_tokens() - cached;
    int n = std::min(remaining, budget_);
    if (num_host_blocks == 0) {
      n = FitRows(*r, cached, n);
      if (n == 0) break;
    }
    if (!config_.enable_chunked_prefill && n < remaining) break;
    // A request that loads gets only its prefix's blocks now; its chunks come once it runs.
    if (!kv_->AllocateSlots(&r->kv, cached, num_host_blocks > 0 ? 0 : n, &hit_)) break;
    if (num_host_blocks > 0) {
      kv_->DeferLookup(&r->kv, r->num_tokens(), hit_);  // a hit once its load succeeded
    } else if (!needs_every_row) {
      kv_->RecordLookup(r->num_tokens(), hit_);  // (requests needing every row made none)
    }
    waiting_.erase(waiting_.begin() + static_cast<ptrdiff_t>(w));
    if (r->num_cached_tokens < 0) r->num_cached_tokens = cached;
    if (num_host_blocks > 0) {
      r->status = RequestStatus::kLoading;
      loading_.push_back(r);
      continue;
    }
    r->num_computed_tokens = cached;
    r->status = RequestStatus::kRunning;
    running_.push_back(r);
    Add(r, n);
  }

  for (const ScheduledRequest& s : out_.scheduled) s.request->scheduled_index = -1;
  kv_->TakeCopyGroups(&out_.copies);
  return out_;
}

void Scheduler::RemoveRequest(RequestState* request) {
  if (request->status == RequestStatus::kRunning) {
    auto it = std::find(running_.begin(), running_.end(), request);
    KILN_CHECK(it != running_.end());
    running_.erase(it);
  } else if (request->status == RequestStatus::kLoading) {
    auto it = std::find(loading_.begin(), loading_.end(), request);
    KILN_CHECK(it != loading_.end());
    loading_.erase(it);
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
