// Engine::Impl: the threads and queues behind the public Engine (include/kiln/engine.h).
//
// Threads: the caller's threads (Submit, Abort, Metrics, Shutdown), one engine thread (owns the
// EngineCore and the Backend; runs step() whenever there is work, sleeps otherwise) and one
// output thread (invokes callbacks, so callbacks never run on or block the engine thread).
// Locks: `mu_` guards the submit and abort queues, the live request-id set and the published
// metrics snapshot; `out_mu_` guards the output queue. Nothing else is shared.
//
// Engine::Create loads the model (model/weights.h), creates the backend (cpu, or cuda when built
// with it) and the tokenizer (optional), then calls CreateWithBackend, which tests also use with
// a fake Backend.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "backend/backend.h"
#include "engine/engine_core.h"
#include "engine/token_constraint.h"
#include "kiln/engine.h"

namespace kiln {

// Checks a request against the model and limits (see Engine::Submit for the error codes).
Status ValidateRequest(const Request& request, int vocab_size, int max_model_len);

class Engine::Impl final {
 public:
  // Builds an Engine around an existing backend. `keep_alive` (e.g. the LoadedModel) is held for
  // the engine's lifetime. `tokenizer` may be null.
  static StatusOr<std::unique_ptr<Engine>> CreateWithBackend(
      const EngineOptions& options, std::unique_ptr<Backend> backend,
      std::unique_ptr<Tokenizer> tokenizer, std::shared_ptr<const void> keep_alive,
      bool check_invariants_every_step = false);

  // Installs the constrained-decoding factory (src/structured/). Call before submitting
  // constrained requests; it is invoked on the submitting thread and must be thread-safe.
  static void SetTokenConstraintFactory(Engine* engine, TokenConstraintFactory factory);
  // The core's last invariant-check result (tests): runs on the engine thread between steps.
  static Status CheckInvariants(Engine* engine);

  Impl(const EngineOptions& options, ModelInfo info, EngineCoreConfig core_config,
       std::unique_ptr<Backend> backend, std::unique_ptr<Tokenizer> tokenizer,
       std::shared_ptr<const void> keep_alive, std::vector<std::unique_ptr<KvTier>> lower_tiers);
  ~Impl();

  StatusOr<std::string> Submit(Request request, OutputCallback callback);
  StatusOr<std::vector<std::string>> SubmitBatch(std::vector<Request> requests,
                                                 std::vector<OutputCallback> callbacks);
  Status PrepareResponseFormat(const ResponseFormat& format);
  void Abort(const std::string& request_id);
  void Shutdown(bool abort_running);
  EngineMetrics Metrics() const;

  const ModelInfo& model_info() const { return info_; }
  const EngineOptions& options() const { return options_; }
  const Tokenizer* tokenizer() const { return tokenizer_.get(); }

 private:
  void Start();
  void EngineLoop();
  void OutputLoop();

  EngineOptions options_;
  ModelInfo info_;
  std::shared_ptr<const void> keep_alive_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<EngineCore> core_;  // engine thread only (after Start)
  TokenConstraintFactory constraint_factory_;
  // Submit, split: validation and state building (no lock), then enqueueing under mu_.
  StatusOr<std::unique_ptr<RequestState>> PrepareRequest(Request request, OutputCallback callback);
  // The constraint of a structured request (the factory compiles or takes the cached grammar).
  StatusOr<std::unique_ptr<TokenConstraint>> MakeConstraint(const ResponseFormat& format);
  StatusOr<std::vector<std::string>> EnqueueLocked(
      std::vector<std::unique_ptr<RequestState>>* states);

  mutable std::mutex mu_;
  std::condition_variable engine_cv_;
  std::vector<std::unique_ptr<RequestState>> pending_submits_;
  std::vector<std::string> pending_aborts_;
  std::unordered_set<std::string> live_ids_;
  EngineMetrics metrics_;
  bool stopping_ = false;
  bool abort_running_ = false;
  int invariant_checks_requested_ = 0;
  Status invariant_status_;
  int invariant_checks_done_ = 0;
  std::condition_variable invariant_cv_;
  uint64_t next_id_ = 0;
  std::mt19937_64 seed_rng_;

  std::mutex out_mu_;
  std::condition_variable out_cv_;
  std::deque<EngineOutput> out_queue_;
  bool out_done_ = false;

  std::mutex shutdown_mu_;
  bool joined_ = false;
  std::thread engine_thread_;
  std::thread output_thread_;
};

}  // namespace kiln
