// EngineCore: the single-threaded heart of the engine. It owns the live requests, the KV cache
// manager, the scheduler and the model runner, and drives a Backend one step at a time:
//   Step(): schedule → build ForwardBatch → backend Forward → sample (logits rows) / read hidden
//           rows → update requests (computed tokens, cache full blocks, append tokens, stop checks)
//           → emit outputs → drop finished requests.
// kGenerate requests stream one output per generated token (the first also carries the prompt
// logprobs when asked for: one logits row per prompt token, sampled greedily and read for the
// prompt token's logprob and the top alternatives); kEmbed requests finish after their
// prefill with their final hidden states (all prompt rows or the last one); kScore requests finish
// after their prefill with the logprobs of chosen_logprob_token_ids at the last prompt position.
//
// Every request added gets exactly one final output (finished == true): stop, length, abort or
// error (a failed Forward/Sample fails the requests of that step). After it, the request's
// blocks are released.
//
// Async scheduling (one step in flight): Step() schedules and launches step n+1 (Forward, which
// the CUDA backend runs asynchronously) before it reads step n's samples; tokens still being
// sampled are placeholders fed through ForwardBatch::deferred_tokens (request_state.h). Then it
// waits for step n's samples, appends them, emits outputs and applies stop rules — while the
// device runs step n+1 — and launches step n+1's sampling (Backend::SampleAsync) without waiting.
// A request that finished at step n wastes its row of step n+1 (its result is discarded; its
// blocks are freed at once: later steps run after n+1 on the device). When the backend's samples
// are ready at the start of a step (SampleReady: the CPU backend, or a host that fell behind) they
// are read first, and step n+1 needs no placeholders.
//
// Grammar bitmasks overlap the forward pass by design: masks of constrained rows whose last
// token is known are filled on a MaskWorker thread during Forward; masks that need step n's
// sample are filled after it was read, while the device runs step n+1.
//
// KV tiers (kv_cache_manager.h): with a host tier (config.host_tier_records > 0; the backend's host
// pool must be allocated) and optional lower tiers (disk, Redis), each step first collects the
// finished copies (Backend::KvCopyDone) and lower-tier jobs, then issues the scheduler's copy
// groups (Backend::CopyKvBlocks) before its Forward. has_work() stays true while transfers are in
// flight, so a drained core holds no pinned block.
//
// Not thread-safe: used by one thread (the engine loop's thread, or a test). Requests are
// validated before AddRequest (engine_loop.cc); EngineCore CHECKs only its own invariants.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend/backend.h"
#include "engine/mask_worker.h"
#include "engine/model_runner.h"
#include "engine/request_state.h"
#include "engine/scheduler.h"
#include "kiln/engine.h"
#include "kv/host_tier.h"
#include "kv/kv_cache_manager.h"
#include "kv/tier.h"
#include "kv/tier_worker.h"

namespace kiln {

struct EngineCoreConfig {
  SchedulerConfig scheduler;
  KvCacheOptions cache;
  int max_model_len = 0;  // > 0
  int vocab_size = 0;
  int hidden_size = 0;
  std::vector<int32_t> eos_token_ids;
  // Ids the model has logits for but the tokenizer cannot decode (e.g. Qwen2.5's lm_head has
  // 151,936 rows, its tokenizer 151,665 ids): never sampled. Sorted.
  std::vector<int32_t> never_sample_ids;
  // Launch step n+1 before reading step n's samples (see above); false → every step waits for its
  // own samples (masks still overlap Forward on the MaskWorker).
  bool async_scheduling = true;
  // Test/debug aid: run CheckInvariants() after every step and abort when it fails.
  bool check_invariants_every_step = false;
  // Host tier records (0: no host tier); the backend's host pool must hold at least this many.
  int64_t host_tier_records = 0;
  size_t max_queued_tier_writes = 1024;
};

// An output and the opaque user_data of the request it belongs to.
struct EngineOutput {
  std::shared_ptr<void> user_data;
  RequestOutput output;
};

class EngineCore final {
 public:
  // `backend` must outlive the core; its block_size / num_kv_blocks must match config.cache.
  // `lower_tiers` (disk, Redis; tried in this order) need a host tier.
  EngineCore(const EngineCoreConfig& config, Backend* backend,
             std::vector<std::unique_ptr<KvTier>> lower_tiers = {});
  EngineCore(const EngineCore&) = delete;
  EngineCore& operator=(const EngineCore&) = delete;

  // Takes a validated request (request_id unique among live requests, prompt set, seed set).
  void AddRequest(std::unique_ptr<RequestState> request);
  // Aborts a live request (emitting its final kAbort output); false when unknown.
  bool AbortRequest(const std::string& request_id, std::vector<EngineOutput>* outputs);
  void AbortAll(std::vector<EngineOutput>* outputs);

  // (A sample still in flight always belongs to a live request, or to none: then the next step
  // with work waits for it first.)
  bool has_work() const { return scheduler_.has_work() || kv_.has_pending_io() || !issued_.empty(); }
  // Runs one step; appends the outputs it produced.
  void Step(std::vector<EngineOutput>* outputs);

  EngineMetrics metrics() const;
  // Block accounting (free + in use + cached = total), ref counts == block-table references,
  // queue membership consistent with request status.
  Status CheckInvariants() const;

  const Scheduler& scheduler() const { return scheduler_; }
  const KvCacheManager& kv_cache() const { return kv_; }
  const ModelRunner& model_runner() const { return runner_; }
  const EngineCoreConfig& config() const { return config_; }
  int num_live_requests() const { return static_cast<int>(requests_.size()); }

 private:
  void Finish(RequestState* r, FinishReason reason, int32_t stop_token_id, Status error,
              std::vector<EngineOutput>* outputs, bool merge_with_last = false);
  void Emit(RequestState* r, std::vector<EngineOutput>* outputs, int32_t new_token,
            const SampleResult* sample);
  RequestOutput MakeOutput(const RequestState& r) const;
  // Moves r's prompt logprobs into `out` if asked for and not sent yet.
  static void TakePromptLogprobs(RequestState* r, RequestOutput* out);
  void FailStep(const SchedulerOutput& so, const Status& status,
                std::vector<EngineOutput>* outputs);
  void EraseFinished();
  // Waits for the in-flight step's samples and applies them (tokens, outputs, stop rules).
  void ResolveInFlight(std::vector<EngineOutput>* outputs);
  // KV tiers: collects finished copies / lower-tier jobs; issues a step's copy groups.
  void PollTransfers();
  void IssueCopies(const std::vector<KvCopyGroup>& groups);

  EngineCoreConfig config_;
  Backend* backend_;
  std::unique_ptr<HostTier> host_;
  std::unique_ptr<TierWorker> lower_;
  KvCacheManager kv_;
  Scheduler scheduler_;
  ModelRunner runner_;
  std::unordered_map<std::string, std::unique_ptr<RequestState>> requests_;
  std::vector<RequestState*> finished_;  // finished this step, erased at its end
  // Reused per-step buffers.
  std::vector<SamplingRow> sampling_rows_;
  std::vector<SampleResult> sample_results_;
  std::vector<float> hidden_;
  // The launched step whose samples are not read yet: one entry per logits row (request null when
  // it finished or was aborted meanwhile: the row is discarded).
  struct InFlightRow {
    RequestState* request = nullptr;
    int logits_row = 0;
    bool placeholder = false;  // the request's token_ids.back() is this row's pending token
    // Prompt-logprob rows: the prompt position whose logprobs the row gives (0: a sampling row),
    // and whether the request (max_tokens 0) finishes once this row is read.
    int prompt_position = 0;
    bool finish_after = false;
  };
  std::vector<InFlightRow> inflight_;
  bool sample_in_flight_ = false;
  MaskWorker mask_worker_;
  std::vector<RequestState*> early_masks_, late_masks_;
  struct IssuedCopy {
    uint64_t group = 0;
    uint64_t ticket = 0;
  };
  std::vector<IssuedCopy> issued_;
  std::vector<KvBlockCopy> copy_scratch_;
  std::chrono::steady_clock::time_point now_;  // time of the current step's outputs
  // Counters.
  int64_t num_steps_ = 0;
  int64_t prompt_tokens_total_ = 0;
  int64_t generation_tokens_total_ = 0;
  int64_t requests_finished_total_ = 0;
};

}  // namespace kiln
