// Engine: the thread-safe front of kiln's one loop. Submit() enqueues a request; a dedicated
// engine thread runs step() (schedule → forward → sample → update) and hands outputs to an
// output thread, which invokes each request's callback (so callbacks never run on, or block, the
// engine thread). Abort() may be called from any thread at any time, also for finished or unknown
// ids (then it is a no-op).
//
// Invariants: every accepted request gets exactly one final output (finished == true), whether it
// stopped, hit its length, was aborted, or failed; after it, its KV blocks are released.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kiln/options.h"
#include "kiln/output.h"
#include "kiln/request.h"
#include "kiln/status.h"
#include "kiln/tokenizer.h"

namespace kiln {

struct ModelInfo {
  std::string served_model_name;
  std::string architecture;  // "llama" | "qwen2" | "qwen3"
  int vocab_size = 0;
  int hidden_size = 0;
  int num_layers = 0;
  int max_model_len = 0;
  std::vector<int32_t> eos_token_ids;
  int32_t bos_token_id = -1;
  std::string device;  // "cpu" | "cuda"
};

// Counters of one KV cache tier ("device", "host", "disk", "redis"), cumulative. "Load" is the
// direction toward the device, "store" away from it; tokens count prompt tokens.
struct KvTierMetrics {
  std::string name;
  bool enabled = true;
  int64_t capacity_bytes = 0;
  int64_t used_bytes = 0;
  int64_t query_tokens = 0;  // looked up in this tier (the tiers above missed them)
  int64_t hit_tokens = 0;    // found in this tier
  int64_t bytes_loaded = 0;
  int64_t bytes_stored = 0;
  double load_seconds = 0.0;
  double store_seconds = 0.0;
  int64_t num_loads = 0;
  double load_latency_seconds = 0.0;  // summed over num_loads: request to data ready
  int64_t errors = 0;
  int64_t dropped_writes = 0;
  // Record bytes ÷ measured load bandwidth: the predicted time to bring one block in (0: no data).
  double predicted_block_load_seconds = 0.0;
};

struct EngineMetrics {
  int num_running = 0;
  int num_waiting = 0;
  int64_t num_kv_blocks_total = 0;
  int64_t num_kv_blocks_used = 0;     // referenced by live requests
  int64_t num_kv_blocks_cached = 0;   // free but holding reusable prefix KV
  double kv_usage = 0.0;              // used / total
  int64_t prefix_cache_queries = 0;   // prompt tokens looked up
  int64_t prefix_cache_hits = 0;      // prompt tokens found cached
  int64_t num_preemptions = 0;
  int64_t kv_fetch_timeouts = 0;      // lower-tier fetches a request stopped waiting for
  int64_t num_steps = 0;
  int64_t prompt_tokens_total = 0;
  int64_t generation_tokens_total = 0;
  int64_t requests_finished_total = 0;
  std::vector<KvTierMetrics> kv_tiers;  // "device" first, then the enabled tiers
};

// Receives a request's outputs, in order, on the engine's output thread. Must not block for long.
using OutputCallback = std::function<void(RequestOutput)>;

// Blocking convenience over OutputCallback: a queue of one request's outputs.
class RequestStream final {
 public:
  RequestStream();
  ~RequestStream();
  RequestStream(const RequestStream&) = delete;
  RequestStream& operator=(const RequestStream&) = delete;
  // Blocks for the next output; false once the final output has been returned.
  bool Next(RequestOutput* out);
  const std::string& request_id() const { return request_id_; }

 private:
  friend class Engine;
  struct State;
  std::shared_ptr<State> state_;
  std::string request_id_;
};

class Engine final {
 public:
  static StatusOr<std::unique_ptr<Engine>> Create(const EngineOptions& options);
  ~Engine();  // stops the loop; unfinished requests end with FinishReason::kAbort
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Validates and enqueues. Errors: InvalidArgument (bad params, ids outside the vocabulary, empty
  // prompt), OutOfRange (prompt + max_tokens > max_model_len), ResourceExhausted (waiting queue
  // full), FailedPrecondition (shutting down). Returns the request id.
  StatusOr<std::string> Submit(Request request, OutputCallback callback);
  StatusOr<std::unique_ptr<RequestStream>> Submit(Request request);
  // Submits several requests atomically: all are validated first (the first error is returned and
  // nothing is enqueued), then enqueued together, so the engine admits them in the same step and
  // runs them as one batch (as far as max_num_batched_tokens / max_num_seqs allow).
  // callbacks.size() must equal requests.size(). Returns the ids in order.
  StatusOr<std::vector<std::string>> SubmitBatch(std::vector<Request> requests,
                                                 std::vector<OutputCallback> callbacks);
  // Compiles the constraint of `format` on the calling thread and keeps it in the engine's
  // grammar cache, so that a Submit with the same format shortly after does not compile (a large
  // JSON schema can take seconds: servers call this on a worker thread, not an I/O thread).
  // Returns the error Submit would return for the format (InvalidArgument for a schema kiln cannot
  // honour, Unimplemented when the engine has no tokenizer and so no constraint factory); kText
  // is Ok. Thread-safe.
  Status PrepareResponseFormat(const ResponseFormat& format);
  void Abort(const std::string& request_id);

  // Stops accepting, lets running requests finish (or aborts them when `abort_running`), joins.
  void Shutdown(bool abort_running);

  EngineMetrics Metrics() const;
  const ModelInfo& model_info() const;
  const EngineOptions& options() const;
  // The tokenizer loaded with the model, or nullptr when none was found.
  const Tokenizer* tokenizer() const;

  class Impl;

 private:
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln
