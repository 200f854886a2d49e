// Scheduler: decides, each step, how many tokens of which requests the model computes (the
// token-budget model: prefill, chunked prefill and decode are one mechanism).
//
// Policy per step, within max_num_batched_tokens tokens, max_num_seqs admitted requests and
// max_logits_rows logits rows (only requests asking for prompt logprobs take more than one; their
// prefill chunks are cut to the rows left):
//  0. loading requests whose prefix has been copied in from the host tier become running;
//  1. running requests with one token to compute (decodes), oldest first;
//  2. running requests still prefilling (chunks), oldest first;
//  3. waiting requests in queue order — lower Request::priority first, ties by arrival (a
//     preempted request keeps its place) — each after a prefix-cache lookup, while blocks, budget
//     and seats allow (head-of-line: a request that does not fit stops admission; nothing is
//     admitted in a step that preempted; nor a request whose last token is still being sampled,
//     see request_state.h). A waiting request whose prefix continues in a lower tier (disk,
//     Redis) first gets a fetch into the host tier and is passed over until it completes. A
//     request whose hit includes host blocks is admitted into the loading state (its blocks
//     allocated, the loads in this step's output) and runs once they completed (a failed load
//     sends it back to waiting, to recompute its prompt without the prefix cache).
// When a running request cannot get blocks, the newest running request is preempted (its blocks
// are freed, full ones stay cached; it goes back to the waiting queue and later resumes from the
// cache or by recompute), repeatedly, until the allocation fits or the request itself was
// preempted. Loading requests are never preempted (their loads finish on their own).
//
// The output carries the step's KV copies (loads for admitted requests, stores of the blocks the
// previous step completed) for the engine to issue before the step's Forward.
//
// The Scheduler does not own requests (EngineCore does) and does not run the model. Not
// thread-safe: engine thread only. Schedule() reuses its output's storage across steps.
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "engine/request_state.h"
#include "kv/kv_cache_manager.h"

namespace kiln {

struct SchedulerConfig {
  int max_num_seqs = 256;
  int max_num_batched_tokens = 8192;
  bool enable_chunked_prefill = true;
  // Logits rows one step may ask for (0 = unbounded): a request asking for prompt logprobs takes
  // one per prompt token, so its prefill chunks are cut to what is left of this.
  int max_logits_rows = 0;
};

// The logits rows of a step computing `num_tokens` of `r` from token `start` on (the model runner
// lays them out, the scheduler counts them):
//  - prompt-logprob rows for prompt positions [first, first + count) (from
//    RequestState::next_prompt_logprob on; position q is scored by token row q - 1);
//  - a sampling row when the step completes the request's pending tokens and it samples.
struct PromptLogprobSpan {
  int first = 0;
  int count = 0;
};
PromptLogprobSpan PromptLogprobRows(const RequestState& r, int start, int num_tokens);
bool SamplesAfter(const RequestState& r, int start, int num_tokens);
int LogitsRowsFor(const RequestState& r, int start, int num_tokens);

struct ScheduledRequest {
  RequestState* request = nullptr;
  int num_tokens = 0;  // tokens computed this step, from request->num_computed_tokens on
};

struct SchedulerOutput {
  std::vector<ScheduledRequest> scheduled;  // batch order
  std::vector<RequestState*> preempted;     // preempted this step (now waiting)
  int num_scheduled_tokens = 0;
  std::vector<KvCopyGroup> copies;  // KV transfers to issue before this step's Forward
};

class Scheduler final {
 public:
  Scheduler(const SchedulerConfig& config, KvCacheManager* kv);
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Inserts a request into the waiting queue (by priority, then arrival).
  void AddRequest(RequestState* request);
  const SchedulerOutput& Schedule();
  // Removes a request from the running, loading or waiting queue and frees its blocks (abort).
  void RemoveRequest(RequestState* request);
  // Drops running requests whose status is kFinished (their blocks must already be freed).
  void RemoveFinished();

  // The largest n <= want for which `r`'s rows (computing from `start`) fit in what is left of
  // this step's logits rows (0: none fit).
  int FitRows(const RequestState& r, int start, int want) const;

  bool has_work() const { return !running_.empty() || !waiting_.empty() || !loading_.empty(); }
  int num_running() const { return static_cast<int>(running_.size()); }
  int num_waiting() const { return static_cast<int>(waiting_.size()); }
  int num_loading() const { return static_cast<int>(loading_.size()); }
  int64_t num_preemptions() const { return num_preemptions_; }
  const std::vector<RequestState*>& running() const { return running_; }
  const std::deque<RequestState*>& waiting() const { return waiting_; }
  const std::vector<RequestState*>& loading() const { return loading_; }

 private:
  void Add(RequestState* r, int num_tokens);
  void InsertWaiting(RequestState* r);
  // Preempts running_.back().
  void PreemptNewest();
  // Loading requests whose loads completed → running; a failed load → waiting, to recompute its
  // prompt without the prefix cache (RequestState::skip_prefix_cache).
  void PromoteLoaded();

  SchedulerConfig config_;
  KvCacheManager* kv_;
  std::vector<RequestState*> running_;  // admission order
  std::deque<RequestState*> waiting_;   // by (priority, queue_seq)
  std::vector<RequestState*> loading_;
  SchedulerOutput out_;
  int budget_ = 0;
  int rows_left_ = 0;  // logits rows left this step (SchedulerConfig::max_logits_rows)
  PrefixHit hit_;
  int64_t num_preemptions_ = 0;
  int64_t next_queue_seq_ = 0;
};

}  // namespace kiln
