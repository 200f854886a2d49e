#include "engine/engine_core.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "common/check.h"
#include "common/logging.h"
#include "engine/sampler.h"

namespace kiln {
namespace {

double SecondsBetween(std::chrono::steady_clock::time_point from,
                      std::chrono::steady_clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

std::unique_ptr<HostTier> MakeHostTier(const EngineCoreConfig& config, Backend* backend) {
  if (config.host_tier_records <= 0) return nullptr;
  KILN_CHECK(backend->host_kv_pool() != nullptr) << "host tier without a backend host pool";
  return std::make_unique<HostTier>(backend->host_kv_pool(), backend->kv_block_record_bytes(),
                                    config.host_tier_records, config.cache.block_size);
}

std::unique_ptr<TierWorker> MakeTierWorker(const EngineCoreConfig& config, Backend* backend,
                                           std::vector<std::unique_ptr<KvTier>> tiers) {
  if (tiers.empty()) return nullptr;
  KILN_CHECK_GT(config.host_tier_records, 0) << "lower KV tiers need a host tier";
  TierWorkerOptions o;
  o.block_size = config.cache.block_size;
  o.record_bytes = backend->kv_block_record_bytes();
  o.namespace_hash =
      Checksum64(config.cache.cache_namespace.data(), config.cache.cache_namespace.size());
  o.max_queued_writes = config.max_queued_tier_writes;
  return std::make_unique<TierWorker>(o, std::move(tiers));
}

}  // namespace

EngineCore::EngineCore(const EngineCoreConfig& config, Backend* backend,
                       std::vector<std::unique_ptr<KvTier>> lower_tiers)
    : config_(config),
      backend_(backend),
      host_(MakeHostTier(config, backend)),
      lower_(MakeTierWorker(config, backend, std::move(lower_tiers))),
      kv_(config.cache, host_.get(), lower_.get()),
      scheduler_(config.scheduler, &kv_),
      runner_(config.cache.block_size) {
  KILN_CHECK_GT(config_.max_model_len, 0);
  KILN_CHECK(backend_ != nullptr);
  KILN_CHECK_EQ(backend_->block_size(), config_.cache.block_size);
  KILN_CHECK_LE(config_.cache.num_blocks, backend_->num_kv_blocks());
  sampling_rows_.reserve(static_cast<size_t>(config.scheduler.max_num_seqs));
  sample_results_.reserve(static_cast<size_t>(config.scheduler.max_num_seqs));
}

void EngineCore::AddRequest(std::unique_ptr<RequestState> request) {
  RequestState* r = request.get();
  KILN_CHECK(!r->token_ids.empty());
  r->num_prompt_tokens = static_cast<int>(r->token_ids.size());
  InitStopIds(config_.eos_token_ids, config_.never_sample_ids, r);
  if (r->constraint != nullptr) {
    r->allowed_bitmask.assign(static_cast<size_t>((config_.vocab_size + 31) / 32), 0);
  }
  prompt_tokens_total_ += r->num_prompt_tokens;
  auto [it, inserted] = requests_.emplace(r->request_id, std::move(request));
  KILN_CHECK(inserted) << "duplicate request id " << r->request_id;
  scheduler_.AddRequest(r);
}

RequestOutput EngineCore::MakeOutput(const RequestState& r) const {
  RequestOutput out;
  out.request_id = r.request_id;
  out.usage.prompt_tokens = r.num_prompt_tokens;
  out.usage.completion_tokens = r.num_output_tokens();
  out.usage.cached_tokens = std::max(r.num_cached_tokens, 0);
  out.time_to_first_token_s = std::max(r.time_to_first_token_s, 0.0);
  out.elapsed_s = SecondsBetween(r.arrival_time, now_);
  return out;
}

void EngineCore::TakePromptLogprobs(RequestState* r, RequestOutput* out) {
  if (!r->wants_prompt_logprobs() || r->prompt_logprobs_sent) return;
  out->prompt_logprobs = std::move(r->prompt_logprobs);
  r->prompt_logprobs.clear();
  r->prompt_logprobs_sent = true;
}

void EngineCore::Emit(RequestState* r, std::vector<EngineOutput>* outputs, int32_t new_token,
                      const SampleResult* sample) {
  RequestOutput out = MakeOutput(*r);
  TakePromptLogprobs(r, &out);
  out.new_token_ids.push_back(new_token);
  if (sample != nullptr &&
      (r->sampling.logprobs >= 0 || !r->sampling.chosen_logprob_token_ids.empty())) {
    PositionLogprobs lp;
    lp.chosen = {sample->token_id, sample->logprob};
    lp.top = sample->top;
    lp.requested = sample->requested;
    out.logprobs.push_back(std::move(lp));
  }
  outputs->push_back({r->user_data, std::move(out)});
}

void EngineCore::Finish(RequestState* r, FinishReason reason, int32_t stop_token_id, Status error,
                        std::vector<EngineOutput>* outputs, bool merge_with_last) {
  if (r->has_pending_token()) {  // aborted or failed while its next token was being sampled
    KILN_DCHECK(r->token_ids.back() == RequestState::kPendingTokenId);
    r->token_ids.pop_back();
    r->pending_sample_row = -1;
  }
  if (r->inflight_entry >= 0) {  // that sample is discarded
    inflight_[static_cast<size_t>(r->inflight_entry)].request = nullptr;
    r->inflight_entry = -1;
  }
  if (r->wants_prompt_logprobs()) {  // and so are its prompt-logprob rows still in flight
    for (InFlightRow& row : inflight_) {
      if (row.request == r) row.request = nullptr;
    }
  }
  // The final output: merged into the output this step just produced for r when asked to.
  if (merge_with_last) {
    KILN_DCHECK(outputs->back().output.request_id == r->request_id);
    RequestOutput& out = outputs->back().output;
    out.finished = true;
    out.finish_reason = reason;
    out.stop_token_id = stop_token_id;
    out.error = std::move(error);
  } else {
    RequestOutput out = MakeOutput(*r);
    TakePromptLogprobs(r, &out);
    out.finished = true;
    out.finish_reason = reason;
    out.stop_token_id = stop_token_id;
    out.error = std::move(error);
    if (r->kind == RequestKind::kEmbed && reason == FinishReason::kStop) {
      out.hidden_states = std::move(r->hidden_states);
      out.hidden_size = config_.hidden_size;
    }
    outputs->push_back({r->user_data, std::move(out)});
  }
  if (r->status == RequestStatus::kRunning) {
    kv_.Free(&r->kv);  // the scheduler drops it from running in RemoveFinished()
  } else {
    scheduler_.RemoveRequest(r);
  }
  r->status = RequestStatus::kFinished;
  ++requests_finished_total_;
  finished_.push_back(r);
}

void EngineCore::EraseFinished() {
  scheduler_.RemoveFinished();
  for (RequestState* r : finished_) requests_.erase(r->request_id);
  finished_.clear();
}

bool EngineCore::AbortRequest(const std::string& request_id, std::vector<EngineOutput>* outputs) {
  now_ = std::chrono::steady_clock::now();
  auto it = requests_.find(request_id);
  if (it == requests_.end()) return false;
  RequestState* r = it->second.get();
  Finish(r, FinishReason::kAbort, -1, Status::Aborted("request " + request_id + " aborted"),
         outputs);
  EraseFinished();
  return true;
}

void EngineCore::AbortAll(std::vector<EngineOutput>* outputs) {
  std::vector<std::string> ids;
  ids.reserve(requests_.size());
  for (const auto& [id, r] : requests_) ids.push_back(id);
  for (const std::string& id : ids) AbortRequest(id, outputs);
}

void EngineCore::FailStep(const SchedulerOutput& so, const Status& status,
                          std::vector<EngineOutput>* outputs) {
  KILN_LOG(ERROR) << "engine step failed: " << status.ToString();
  for (const ScheduledRequest& s : so.scheduled) {
    if (s.request->status == RequestStatus::kFinished) continue;  // finished by step n's samples
    Finish(s.request, FinishReason::kError, -1, status, outputs);
  }
}

void EngineCore::ResolveInFlight(std::vector<EngineOutput>* outputs) {
  KILN_DCHECK(sample_in_flight_);
  sample_in_flight_ = false;
  Status status = backend_->WaitSample(&sample_results_);
  if (status.ok() && sample_results_.size() < inflight_.size()) {
    status = Status::Internal("backend returned " + std::to_string(sample_results_.size()) +
                              " samples for " + std::to_string(inflight_.size()) + " rows");
  }
  now_ = std::chrono::steady_clock::now();  // one clock read per step for all outputs
  if (!status.ok()) KILN_LOG(ERROR) << "engine step failed: " << status.ToString();
  for (size_t e = 0; e < inflight_.size(); ++e) {
    RequestState* r = inflight_[e].request;
    if (r == nullptr) continue;  // finished or aborted meanwhile: the row is discarded
    if (!status.ok()) {
      Finish(r, FinishReason::kError, -1, status, outputs);
      continue;
    }
    const SampleResult& sample = sample_results_[static_cast<size_t>(inflight_[e].logits_row)];
    if (inflight_[e].prompt_position > 0) {
      const int q = inflight_[e].prompt_position;
      PositionLogprobs lp;
      lp.chosen = {r->token_ids[static_cast<size_t>(q)],
                   sample.requested.empty() ? 0.0f : sample.requested[0].logprob};
      lp.top = sample.top;
      KILN_DCHECK(static_cast<int>(r->prompt_logprobs.size()) == q - 1);
      r->prompt_logprobs.push_back(std::move(lp));
      if (inflight_[e].finish_after) {
        Finish(r, FinishReason::kLength, -1, Status::Ok(), outputs);  // prompt only (echo)
      }
      continue;
    }
    r->inflight_entry = -1;
    if (r->kind == RequestKind::kScore) {
      RequestOutput out = MakeOutput(*r);
      out.score_logprobs = sample.requested;
      outputs->push_back({r->user_data, std::move(out)});
      Finish(r, FinishReason::kStop, -1, Status::Ok(), outputs, /*merge_with_last=*/true);
      continue;
    }
    const int32_t token = sample.token_id;
    if (token < 0 || token >= config_.vocab_size) {
      Finish(r, FinishReason::kError, -1,
             Status::Internal("sampled id " + std::to_string(token) + " outside the vocabulary"),
             outputs);
      continue;
    }
    if (inflight_[e].placeholder) {
      KILN_DCHECK(r->has_pending_token() && r->token_ids.back() == RequestState::kPendingTokenId);
      r->token_ids.back() = token;
      r->pending_sample_row = -1;
    } else {
      r->token_ids.push_back(token);
    }
    ++generation_tokens_total_;
    if (r->time_to_first_token_s < 0) {
      r->time_to_first_token_s = SecondsBetween(r->arrival_time, now_);
    }
    Emit(r, outputs, token, &sample);
    if (r->constraint != nullptr) {
      Status accepted = r->constraint->AcceptToken(token);
      if (!accepted.ok()) {
        Finish(r, FinishReason::kError, -1, accepted, outputs, /*merge_with_last=*/true);
        continue;
      }
    }
    int32_t stop_id = -1;
    FinishReason reason = CheckStop(*r, config_.eos_token_ids, config_.max_model_len, &stop_id);
    if (reason == FinishReason::kNone && r->constraint != nullptr &&
        r->constraint->IsTerminated()) {
      reason = FinishReason::kStop;
    }
    // A request launched without a placeholder ends by length at this token at the latest.
    KILN_DCHECK(inflight_[e].placeholder || reason != FinishReason::kNone);
    if (reason != FinishReason::kNone) {
      Finish(r, reason, stop_id, Status::Ok(), outputs, /*merge_with_last=*/true);
    }
  }
  inflight_.clear();
}

void EngineCore::PollTransfers() {
  for (size_t i = 0; i < issued_.size();) {
    double seconds = 0.0;
    StatusOr<bool> done = backend_->KvCopyDone(issued_[i].ticket, &seconds);
    if (done.ok() && !*done) {
      ++i;
      continue;
    }
    if (!done.ok()) KILN_LOG(ERROR) << "KV copy failed: " << done.status().ToString();
    kv_.CompleteCopyGroup(issued_[i].group, done.ok() ? Status::Ok() : done.status(), seconds);
    issued_.erase(issued_.begin() + static_cast<ptrdiff_t>(i));
  }
  kv_.PollLowerTiers();
}

void EngineCore::IssueCopies(const std::vector<KvCopyGroup>& groups) {
  for (const KvCopyGroup& g : groups) {
    copy_scratch_.clear();
    for (const BlockTransfer& t : g.transfers) {
      copy_scratch_.push_back({t.device_block, t.host_record});
    }
    StatusOr<uint64_t> ticket = backend_->CopyKvBlocks(
        g.to_host ? KvCopyDirection::kDeviceToHost : KvCopyDirection::kHostToDevice, copy_scratch_);
    if (ticket.ok()) {
      issued_.push_back({g.id, *ticket});
    } else {
      KILN_LOG(ERROR) << "KV copy failed: " << ticket.status().ToString();
      kv_.CompleteCopyGroup(g.id, ticket.status(), 0.0);
    }
  }
}

void EngineCore::Step(std::vector<EngineOutput>* outputs) {
  if (!has_work()) return;
  now_ = std::chrono::steady_clock::now();
  PollTransfers();
  // Samples already there (synchronous backend, or the host fell behind): read them first, so
  // this step feeds known tokens.
  if (sample_in_flight_ && backend_->SampleReady()) {
    ResolveInFlight(outputs);
    EraseFinished();  // before scheduling: finished requests must not be scheduled
  }
  const SchedulerOutput& so = scheduler_.Schedule();
  ++num_steps_;
  // Copies before the Forward: stores of blocks computed by earlier steps, loads for admitted
  // requests (which run once the loads completed).
  IssueCopies(so.copies);
  if (so.scheduled.empty()) {
    if (sample_in_flight_) {
      ResolveInFlight(outputs);
    } else if (kv_.has_pending_io() || !issued_.empty() || scheduler_.num_loading() > 0) {
      // Only transfers are in flight: give them a moment instead of spinning (longer when only
      // background writes to the disk / Redis tiers are left, which no request waits for).
      const bool urgent = kv_.has_pending_transfers() || !issued_.empty();
      std::this_thread::sleep_for(std::chrono::microseconds(urgent ? 50 : 1000));
    } else if (so.preempted.empty() && scheduler_.num_running() == 0 &&
               scheduler_.num_waiting() > 0) {
      // Nothing can ever run (cannot happen when every request fits the cache; a guard, not a
      // policy): fail the head instead of spinning.
      RequestState* head = scheduler_.waiting().front();
      Finish(head, FinishReason::kError, -1,
             Status::ResourceExhausted("request " + head->request_id +
                                       " does not fit in the KV cache"),
             outputs);
    }
    EraseFinished();
    if (config_.check_invariants_every_step) KILN_CHECK_OK(CheckInvariants());
    return;
  }
  runner_.Build(so);
  const ForwardBatch& batch = runner_.batch();
  // Grammar masks of rows that sample this step: on the worker during Forward when the request's
  // last token is known, else after step n's samples were read (while the device runs Forward).
  early_masks_.clear();
  late_masks_.clear();
  for (size_t i = 0; i < so.scheduled.size(); ++i) {
    RequestState* r = so.scheduled[i].request;
    if (runner_.rows()[i].logits_row < 0 || r->constraint == nullptr) continue;
    if (r->num_computed_tokens + so.scheduled[i].num_tokens < r->num_tokens()) continue;
    (r->has_pending_token() ? late_masks_ : early_masks_).push_back(r);
  }
  mask_worker_.Start(early_masks_);
  Status status = backend_->Forward(batch);
  if (status.ok() && !batch.hidden_indices.empty()) status = backend_->GetHidden(&hidden_);
  if (sample_in_flight_) ResolveInFlight(outputs);
  for (RequestState* r : late_masks_) {
    if (r->status != RequestStatus::kFinished && status.ok()) {
      r->constraint->FillNextTokenBitmask(r->allowed_bitmask.data());
    }
  }
  mask_worker_.Wait();
  now_ = std::chrono::steady_clock::now();
  if (!status.ok()) {
    FailStep(so, status, outputs);
    EraseFinished();
    return;
  }

  // Bookkeeping of the launched step, and one sampling row per logits row.
  sampling_rows_.clear();
  inflight_.clear();
  for (size_t i = 0; i < so.scheduled.size(); ++i) {
    RequestState* r = so.scheduled[i].request;
    const ScheduledRows& rows = runner_.rows()[i];
    if (r->status == RequestStatus::kFinished) {  // finished by step n's sample: row discarded
      for (int k = 0; k < rows.prompt_row_count; ++k) {
        sampling_rows_.emplace_back();
        inflight_.push_back({nullptr, rows.prompt_row_begin + k, false});
      }
      if (rows.logits_row >= 0) {
        sampling_rows_.emplace_back();
        inflight_.push_back({nullptr, rows.logits_row, false});
      }
      continue;
    }
    r->num_computed_tokens += so.scheduled[i].num_tokens;
    kv_.CacheComputedBlocks(&r->kv, r->token_ids, r->num_computed_tokens);
    if (rows.hidden_count > 0) {
      const size_t h = static_cast<size_t>(config_.hidden_size);
      r->hidden_states.insert(
          r->hidden_states.end(), hidden_.begin() + static_cast<ptrdiff_t>(rows.hidden_begin * h),
          hidden_.begin() + static_cast<ptrdiff_t>((rows.hidden_begin + rows.hidden_count) * h));
    }
    // Sampling rows hold spans into token_ids, and the placeholder pushed below must not move
    // them: make room first (geometric growth, so this stays amortized O(1)).
    if (r->token_ids.size() == r->token_ids.capacity()) {
      r->token_ids.reserve(2 * r->token_ids.size() + 16);
    }
    // Prompt-logprob rows: greedy rows read only for the prompt token's logprob and the top N.
    for (int k = 0; k < rows.prompt_row_count; ++k) {
      const int q = rows.prompt_position_begin + k;
      KILN_DCHECK(rows.prompt_row_begin + k == static_cast<int>(sampling_rows_.size()));
      SamplingRow& s = sampling_rows_.emplace_back();
      s.temperature = 0.0f;
      s.num_top_logprobs = r->sampling.prompt_logprobs;
      s.requested_token_ids = std::span<const int32_t>(&r->token_ids[static_cast<size_t>(q)], 1);
      InFlightRow row{r, rows.prompt_row_begin + k, false};
      row.prompt_position = q;
      inflight_.push_back(row);
    }
    if (rows.prompt_row_count > 0) {
      r->next_prompt_logprob = rows.prompt_position_begin + rows.prompt_row_count;
    }
    if (r->num_computed_tokens < r->num_tokens()) continue;  // prefill chunk
    if (r->kind == RequestKind::kEmbed) {
      Finish(r, FinishReason::kStop, -1, Status::Ok(), outputs);
      continue;
    }
    if (r->kind == RequestKind::kGenerate && r->sampling.max_tokens == 0) {
      // Prompt only (echo): finished now, or once its last prompt-logprob rows were read.
      if (rows.prompt_row_count > 0) {
        inflight_.back().finish_after = true;
      } else {
        Finish(r, FinishReason::kLength, -1, Status::Ok(), outputs);
      }
      continue;
    }
    KILN_DCHECK(rows.logits_row == static_cast<int>(sampling_rows_.size()));
    sampling_rows_.emplace_back();
    BuildSamplingRow(*r, &sampling_rows_.back());
    InFlightRow row{r, rows.logits_row, false};
    // The sampled token becomes a placeholder so that the next step can feed it, unless it ends
    // the request by length anyway (then nothing schedules the request again).
    if (r->kind == RequestKind::kGenerate && r->num_output_tokens() + 1 < r->sampling.max_tokens &&
        r->num_tokens() + 1 < config_.max_model_len) {
      r->token_ids.push_back(RequestState::kPendingTokenId);
      r->pending_sample_row = rows.logits_row;
      row.placeholder = true;
    }
    r->inflight_entry = static_cast<int>(inflight_.size());
    inflight_.push_back(row);
  }
  if (!sampling_rows_.empty()) {
    status = backend_->SampleAsync(sampling_rows_);
    if (status.ok()) {
      sample_in_flight_ = true;
      if (!config_.async_scheduling) ResolveInFlight(outputs);
    } else {
      KILN_LOG(ERROR) << "engine step failed: " << status.ToString();
      for (const InFlightRow& row : inflight_) {
        if (row.request != nullptr) Finish(row.request, FinishReason::kError, -1, status, outputs);
      }
      inflight_.clear();
    }
  }
  EraseFinished();
  if (config_.check_invariants_every_step) KILN_CHECK_OK(CheckInvariants());
}

EngineMetrics EngineCore::metrics() const {
  EngineMetrics m;
  m.num_running = scheduler_.num_running();
  m.num_waiting = scheduler_.num_waiting();
  const BlockPool& pool = kv_.pool();
  m.num_kv_blocks_total = pool.num_blocks();
  m.num_kv_blocks_used = pool.num_used_blocks();
  m.num_kv_blocks_cached = pool.num_cached_free_blocks();
  m.kv_usage = static_cast<double>(m.num_kv_blocks_used) / static_cast<double>(pool.num_blocks());
  m.prefix_cache_queries = kv_.prefix_cache_queries();
  m.prefix_cache_hits = kv_.prefix_cache_hits();
  m.num_preemptions = scheduler_.num_preemptions();
  m.kv_fetch_timeouts = kv_.num_fetch_timeouts();
  m.num_steps = num_steps_;
  m.prompt_tokens_total = prompt_tokens_total_;
  m.generation_tokens_total = generation_tokens_total_;
  m.requests_finished_total = requests_finished_total_;
  const int64_t record_bytes = host_ != nullptr ? host_->record_bytes() : 0;
  for (const TierStats& t : kv_.TierMetrics()) {
    KvTierMetrics k;
    k.name = t.name;
    k.enabled = t.enabled;
    k.capacity_bytes = t.capacity_bytes;
    k.used_bytes = t.used_bytes;
    if (t.name == "device") {  // the pool's blocks, in the size of a block's record
      const int64_t block_bytes = backend_->kv_block_record_bytes();
      k.capacity_bytes = pool.num_blocks() * block_bytes;
      k.used_bytes = (pool.num_used_blocks() + pool.num_cached_free_blocks()) * block_bytes;
    }
    k.query_tokens = t.query_tokens;
    k.hit_tokens = t.hit_tokens;
    k.bytes_loaded = t.bytes_loaded;
    k.bytes_stored = t.bytes_stored;
    k.load_seconds = t.load_seconds;
    k.store_seconds = t.store_seconds;
    k.num_loads = t.num_loads;
    k.load_latency_seconds = t.load_latency_seconds;
    k.errors = t.errors;
    k.dropped_writes = t.dropped_writes;
    // Predicted cost of bringing one block in from this tier: record bytes ÷ measured bandwidth.
    if (t.bytes_loaded > 0 && t.load_seconds > 0.0) {
      k.predicted_block_load_seconds =
          static_cast<double>(record_bytes) * t.load_seconds / static_cast<double>(t.bytes_loaded);
    }
    m.kv_tiers.push_back(std::move(k));
  }
  return m;
}

Status EngineCore::CheckInvariants() const {
  std::vector<const KvSequence*> live;
  live.reserve(requests_.size());
  size_t running = 0, waiting = 0, loading = 0;
  for (const auto& [id, r] : requests_) {
    live.push_back(&r->kv);
    if (r->status == RequestStatus::kLoading) {
      ++loading;
      if (r->kv.block_table.empty())
        return Status::Internal("loading request " + id + " has no blocks");
      continue;
    }
    if (r->status == RequestStatus::kRunning) {
      ++running;
      const int64_t need = kv_.BlocksFor(r->num_computed_tokens);
      if (static_cast<int64_t>(r->kv.block_table.size()) < need) {
        return Status::Internal("request " + id + " has fewer blocks than computed tokens");
      }
    } else if (r->status == RequestStatus::kWaiting) {
      ++waiting;
      if (!r->kv.block_table.empty())
        return Status::Internal("waiting request " + id + " holds blocks");
    } else {
      return Status::Internal("finished request " + id + " still live");
    }
  }
  if (running != scheduler_.running().size() || waiting != scheduler_.waiting().size() ||
      loading != scheduler_.loading().size()) {
    return Status::Internal("queue sizes disagree with request states");
  }
  return kv_.CheckInvariants(live);
}

}  // namespace kiln
