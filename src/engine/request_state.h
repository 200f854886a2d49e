// RequestState: everything the engine thread knows about one live request: its tokens (prompt
// then generated), how many of them have KV computed, its KV blocks, its scheduling status and
// what has been reported to the caller. Owned by EngineCore; the Scheduler holds raw pointers.
//
// Token accounting: token_ids = prompt ++ output. num_computed_tokens ≤ token_ids.size(); the
// tokens [num_computed_tokens, token_ids.size()) are fed to the model next (for a running decode
// exactly one: the last sampled token). A preempted request restarts at num_computed_tokens = 0
// (or at its cached prefix).
//
// Async scheduling: once a step that samples the request's next token is launched, that token is
// appended as a placeholder (kPendingTokenId) so that the next step can be scheduled (and feed it,
// through ForwardBatch::deferred_tokens) before its value is known; pending_sample_row then names
// the logits row it is sampled from. At most one token is pending; it is always token_ids.back().
// A request whose pending token ends it by length gets no placeholder (nothing schedules it).
//
// Thread-safety: engine thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/token_constraint.h"
#include "kiln/output.h"
#include "kiln/request.h"
#include "kv/kv_cache_manager.h"

namespace kiln {

// kLoading: admitted, holding blocks, waiting for its cached prefix to be copied in from the host
// tier (the scheduler runs the others meanwhile).
enum class RequestStatus { kWaiting, kLoading, kRunning, kFinished };

struct RequestState {
  static constexpr int32_t kPendingTokenId = -1;

  std::string request_id;
  RequestKind kind = RequestKind::kGenerate;
  SamplingParams sampling;
  bool return_all_hidden = false;
  uint64_t seed = 0;        // sampling.seed or a random one drawn at submit
  int64_t arrival_seq = 0;  // submission order
  int priority = 0;         // waiting-queue order: lower first, ties by arrival (Request::priority)
  int64_t queue_seq = -1;   // the scheduler's arrival order (assigned by Scheduler::AddRequest)

  std::vector<int32_t> token_ids;  // prompt ++ output
  int num_prompt_tokens = 0;
  int num_computed_tokens = 0;
  int num_cached_tokens = -1;  // prefix-cache hit at first scheduling (-1: not yet scheduled)
  KvSequence kv;
  RequestStatus status = RequestStatus::kWaiting;
  int num_preemptions = 0;
  // Set when loading its cached prefix failed: recomputed from scratch, never from the cache.
  bool skip_prefix_cache = false;

  // Ids masked while fewer than min_tokens were generated: EOS (unless ignore_eos),
  // stop_token_ids and the never-sampled ids.
  std::vector<int32_t> min_tokens_banned_ids;  // stop ids ∪ never_sample_ids, sorted
  std::vector<int32_t> never_sample_ids;       // banned at every position, sorted
  std::unique_ptr<TokenConstraint> constraint;  // null → unconstrained
  std::vector<uint32_t> allowed_bitmask;        // [ceil(vocab / 32)] when constrained

  // Output bookkeeping.
  std::vector<float> hidden_states;  // kEmbed: accumulated rows
  // sampling.prompt_logprobs: the prompt positions whose logprobs were computed (in order; entry
  // i is position i + 1), the next position to ask a logits row for, and whether they were sent.
  std::vector<PositionLogprobs> prompt_logprobs;
  int next_prompt_logprob = 1;
  bool prompt_logprobs_sent = false;
  bool wants_prompt_logprobs() const {
    return kind == RequestKind::kGenerate && sampling.prompt_logprobs >= 0;
  }
  std::chrono::steady_clock::time_point arrival_time;
  double time_to_first_token_s = -1.0;
  std::shared_ptr<void> user_data;  // opaque to the core (the engine loop's callback)

  // Scheduler scratch: index in the current SchedulerOutput, -1 when not scheduled this step.
  int scheduled_index = -1;
  // Async scheduling (see above): logits row of the launched step whose sample is the placeholder
  // token_ids.back() (-1: no placeholder), and this request's entry in the core's in-flight rows.
  int pending_sample_row = -1;
  int inflight_entry = -1;

  int num_tokens() const { return static_cast<int>(token_ids.size()); }
  int num_output_tokens() const { return num_tokens() - num_prompt_tokens; }
  int num_tokens_to_compute() const { return num_tokens() - num_computed_tokens; }
  bool has_pending_token() const { return pending_sample_row >= 0; }
  std::span<const int32_t> prompt_ids() const {
    return {token_ids.data(), static_cast<size_t>(num_prompt_tokens)};
  }
  std::span<const int32_t> output_ids() const {
    return {token_ids.data() + num_prompt_tokens, static_cast<size_t>(num_output_tokens())};
  }
};

}  // namespace kiln
