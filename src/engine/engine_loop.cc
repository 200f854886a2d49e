#include "engine/engine_loop.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <utility>

#include "common/check.h"
#include "common/logging.h"
#include "engine/backend_factory.h"
#include "engine/kv_tier_setup.h"
#include "engine/structured_constraint.h"
#include "model/weights.h"

namespace kiln {

// ---- validation ------------------------------------------------------------------------------

Status ValidateRequest(const Request& request, int vocab_size, int max_model_len) {
  const auto& prompt = request.prompt_token_ids;
  if (prompt.empty()) return Status::InvalidArgument("prompt_token_ids is empty");
  for (size_t i = 0; i < prompt.size(); ++i) {
    if (prompt[i] < 0 || prompt[i] >= vocab_size) {
      return Status::InvalidArgument(
          "prompt_token_ids[" + std::to_string(i) + "] = " + std::to_string(prompt[i]) +
          " is outside the vocabulary [0, " + std::to_string(vocab_size) + ")");
    }
  }
  KILN_RETURN_IF_ERROR(request.sampling.Validate(vocab_size));
  const int64_t num_prompt = static_cast<int64_t>(prompt.size());
  switch (request.kind) {
    case RequestKind::kGenerate: {
      // max_tokens 0 runs the prompt only (completions' echo scoring): it finishes after its
      // prefill with reason kLength and no output tokens. SamplingParams::Validate refuses < 0.
      const int64_t total = num_prompt + request.sampling.max_tokens;
      if (total > max_model_len) {
        return Status::OutOfRange(
            "prompt (" + std::to_string(num_prompt) + " tokens) + max_tokens (" +
            std::to_string(request.sampling.max_tokens) + ") = " + std::to_string(total) +
            " exceeds max_model_len (" + std::to_string(max_model_len) + ")");
      }
      break;
    }
    case RequestKind::kScore:
      if (request.sampling.prompt_logprobs >= 0) {
        return Status::InvalidArgument("prompt_logprobs applies to generation requests only");
      }
      if (request.sampling.chosen_logprob_token_ids.empty()) {
        return Status::InvalidArgument("a score request needs chosen_logprob_token_ids");
      }
      [[fallthrough]];
    case RequestKind::kEmbed:
      if (request.sampling.prompt_logprobs >= 0) {
        return Status::InvalidArgument("prompt_logprobs applies to generation requests only");
      }
      if (num_prompt > max_model_len) {
        return Status::OutOfRange("prompt (" + std::to_string(num_prompt) +
                                  " tokens) exceeds max_model_len (" +
                                  std::to_string(max_model_len) + ")");
      }
      break;
  }
  return Status::Ok();
}

// ---- RequestStream ---------------------------------------------------------------------------

struct RequestStream::State {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<RequestOutput> outputs;
  bool final_queued = false;
  bool final_returned = false;
};

RequestStream::RequestStream() : state_(std::make_shared<State>()) {}
RequestStream::~RequestStream() = default;

bool RequestStream::Next(RequestOutput* out) {
  std::unique_lock<std::mutex> lock(state_->mu);
  if (state_->final_returned) return false;
  state_->cv.wait(lock, [&] { return !state_->outputs.empty(); });
  *out = std::move(state_->outputs.front());
  state_->outputs.pop_front();
  if (out->finished) state_->final_returned = true;
  return true;
}

// ---- Engine ----------------------------------------------------------------------------------

namespace {

std::string DeriveServedName(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const size_t slash = p.find_last_of('/');
  std::string name = slash == std::string::npos ? p : p.substr(slash + 1);
  if (name.size() > 5 && name.ends_with(".gguf")) name.resize(name.size() - 5);
  return name;
}

}  // namespace

StatusOr<std::unique_ptr<Engine>> Engine::Create(const EngineOptions& options) {
  KILN_RETURN_IF_ERROR(options.Validate());
  KILN_ASSIGN_OR_RETURN(std::shared_ptr<const LoadedModel> model, LoadModel(options.model));
  KILN_ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, CreateBackend(model, options));
  std::unique_ptr<Tokenizer> tokenizer;
  const std::string tok_path = options.model.tokenizer_path.empty() ? options.model.model_path
                                                                    : options.model.tokenizer_path;
  StatusOr<std::unique_ptr<Tokenizer>> tok = LoadTokenizer(tok_path);
  if (tok.ok()) {
    tokenizer = std::move(tok).value();
  } else if (!options.model.tokenizer_path.empty() ||
             std::ifstream(options.model.model_path + "/tokenizer.json").good()) {
    // A tokenizer that was asked for, or one that sits next to the weights but does not load, is
    // an error (serving ids only would hide it).
    return tok.status().WithContext("loading the tokenizer");
  } else {
    KILN_LOG(WARNING) << "no tokenizer loaded from " << tok_path << ": " << tok.status().ToString()
                      << " (the engine works on token ids only)";
  }
  KILN_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine,
                        Impl::CreateWithBackend(options, std::move(backend), std::move(tokenizer),
                                                std::shared_ptr<const void>(model)));
  if (engine->tokenizer() != nullptr) {
    Impl::SetTokenConstraintFactory(
        engine.get(),
        MakeStructuredConstraintFactory(engine->tokenizer(), engine->model_info().vocab_size,
                                        engine->model_info().eos_token_ids));
  }
  return engine;
}

StatusOr<std::unique_ptr<Engine>> Engine::Impl::CreateWithBackend(
    const EngineOptions& options, std::unique_ptr<Backend> backend,
    std::unique_ptr<Tokenizer> tokenizer, std::shared_ptr<const void> keep_alive,
    bool check_invariants_every_step) {
  KILN_RETURN_IF_ERROR(options.cache.Validate().WithContext("cache"));
  KILN_RETURN_IF_ERROR(options.scheduler.Validate().WithContext("scheduler"));
  const ModelConfig& cfg = backend->config();
  if (backend->block_size() != options.cache.block_size) {
    return Status::Internal("backend block_size " + std::to_string(backend->block_size()) +
                            " != cache.block_size " + std::to_string(options.cache.block_size));
  }
  const int64_t num_blocks = backend->num_kv_blocks();
  if (num_blocks <= 0) return Status::ResourceExhausted("the backend has no KV blocks");
  int max_model_len = options.scheduler.max_model_len;
  if (max_model_len == 0) {
    max_model_len = cfg.max_position_embeddings;
  } else if (max_model_len > cfg.max_position_embeddings) {
    return Status::InvalidArgument("scheduler.max_model_len (" + std::to_string(max_model_len) +
                                   ") exceeds the model's max_position_embeddings (" +
                                   std::to_string(cfg.max_position_embeddings) + ")");
  }
  const int64_t capacity = num_blocks * options.cache.block_size;
  if (max_model_len > capacity) {
    KILN_LOG(WARNING) << "max_model_len " << max_model_len << " exceeds the KV cache capacity ("
                      << num_blocks << " blocks x " << options.cache.block_size << " = " << capacity
                      << " tokens); capping max_model_len at " << capacity;
    max_model_len = static_cast<int>(capacity);
  }
  if (!options.scheduler.enable_chunked_prefill &&
      max_model_len > options.scheduler.max_num_batched_tokens) {
    KILN_LOG(WARNING) << "chunked prefill is off: capping max_model_len " << max_model_len
                      << " at max_num_batched_tokens " << options.scheduler.max_num_batched_tokens;
    max_model_len = options.scheduler.max_num_batched_tokens;
  }
  EngineCoreConfig core;
  core.scheduler.max_num_seqs = options.scheduler.max_num_seqs;
  core.scheduler.max_num_batched_tokens = options.scheduler.max_num_batched_tokens;
  core.scheduler.enable_chunked_prefill = options.scheduler.enable_chunked_prefill;
  core.scheduler.max_logits_rows =
      std::max(backend->max_logits_rows(), options.scheduler.max_num_seqs);
  core.async_scheduling = options.scheduler.async_scheduling;
  core.cache.block_size = options.cache.block_size;
  core.cache.num_blocks = num_blocks;
  core.cache.enable_prefix_caching = options.cache.enable_prefix_caching;
  core.cache.fetch_timeout_s = options.cache.kv_fetch_timeout_ms / 1000.0;
  core.max_model_len = max_model_len;
  core.vocab_size = cfg.vocab_size;
  core.hidden_size = cfg.hidden_size;
  core.eos_token_ids = cfg.eos_token_ids;
  if (tokenizer != nullptr && tokenizer->vocab_size() < cfg.vocab_size) {
    for (int32_t id = tokenizer->vocab_size(); id < cfg.vocab_size; ++id) {
      core.never_sample_ids.push_back(id);
    }
  }
  core.check_invariants_every_step = check_invariants_every_step;
  KILN_ASSIGN_OR_RETURN(KvTierSetup tiers, SetUpKvTiers(options, backend.get(), max_model_len));
  core.cache.cache_namespace = tiers.cache_namespace;
  core.host_tier_records = tiers.host_records;

  ModelInfo info;
  info.served_model_name = options.model.served_model_name.empty()
                               ? DeriveServedName(options.model.model_path)
                               : options.model.served_model_name;
  info.architecture = cfg.architecture;
  info.vocab_size = cfg.vocab_size;
  info.hidden_size = cfg.hidden_size;
  info.num_layers = cfg.num_hidden_layers;
  info.max_model_len = max_model_len;
  info.eos_token_ids = cfg.eos_token_ids;
  info.bos_token_id = cfg.bos_token_id;
  info.device = options.device.device;

  EngineOptions effective = options;
  effective.scheduler.max_model_len = max_model_len;
  effective.cache.num_blocks = num_blocks;
  auto impl = std::make_unique<Impl>(effective, std::move(info), std::move(core),
                                     std::move(backend), std::move(tokenizer),
                                     std::move(keep_alive), std::move(tiers.lower_tiers));
  impl->Start();
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

void Engine::Impl::SetTokenConstraintFactory(Engine* engine, TokenConstraintFactory factory) {
  std::lock_guard<std::mutex> lock(engine->impl_->mu_);
  engine->impl_->constraint_factory_ = std::move(factory);
}

Status Engine::Impl::CheckInvariants(Engine* engine) {
  Impl* impl = engine->impl_.get();
  std::unique_lock<std::mutex> lock(impl->mu_);
  const int target = ++impl->invariant_checks_requested_;
  impl->engine_cv_.notify_one();
  impl->invariant_cv_.wait(lock,
                           [&] { return impl->invariant_checks_done_ >= target || impl->joined_; });
  if (impl->invariant_checks_done_ < target) return Status::FailedPrecondition("engine stopped");
  return impl->invariant_status_;
}

Engine::Impl::Impl(const EngineOptions& options, ModelInfo info, EngineCoreConfig core_config,
                   std::unique_ptr<Backend> backend, std::unique_ptr<Tokenizer> tokenizer,
                   std::shared_ptr<const void> keep_alive,
                   std::vector<std::unique_ptr<KvTier>> lower_tiers)
    : options_(options),
      info_(std::move(info)),
      keep_alive_(std::move(keep_alive)),
      backend_(std::move(backend)),
      tokenizer_(std::move(tokenizer)),
      seed_rng_(std::random_device{}()) {
  core_ = std::make_unique<EngineCore>(core_config, backend_.get(), std::move(lower_tiers));
  metrics_ = core_->metrics();
}

Engine::Impl::~Impl() { Shutdown(/*abort_running=*/true); }

void Engine::Impl::Start() {
  engine_thread_ = std::thread([this] { EngineLoop(); });
  output_thread_ = std::thread([this] { OutputLoop(); });
}

StatusOr<std::string> Engine::Impl::Submit(Request request, OutputCallback callback) {
  std::vector<std::unique_ptr<RequestState>> states;
  KILN_ASSIGN_OR_RETURN(auto state, PrepareRequest(std::move(request), std::move(callback)));
  states.push_back(std::move(state));
  std::lock_guard<std::mutex> lock(mu_);
  KILN_ASSIGN_OR_RETURN(std::vector<std::string> ids, EnqueueLocked(&states));
  return ids.front();
}

StatusOr<std::vector<std::string>> Engine::Impl::SubmitBatch(
    std::vector<Request> requests, std::vector<OutputCallback> callbacks) {
  if (requests.size() != callbacks.size()) {
    return Status::InvalidArgument("SubmitBatch: one callback per request is required");
  }
  if (requests.empty()) return std::vector<std::string>{};
  std::vector<std::unique_ptr<RequestState>> states;
  for (size_t i = 0; i < requests.size(); ++i) {
    auto state = PrepareRequest(std::move(requests[i]), std::move(callbacks[i]));
    if (!state.ok()) {
      return state.status().WithContext("request " + std::to_string(i) + " of the batch");
    }
    states.push_back(std::move(state).value());
  }
  std::lock_guard<std::mutex> lock(mu_);
  return EnqueueLocked(&states);
}

StatusOr<std::unique_ptr<RequestState>> Engine::Impl::PrepareRequest(Request request,
                                                                     OutputCallback callback) {
  KILN_RETURN_IF_ERROR(ValidateRequest(request, info_.vocab_size, info_.max_model_len));
  if (request.sampling.prompt_logprobs >= 0 && !core_->config().scheduler.enable_chunked_prefill) {
    // Without chunks the whole prompt's rows come in one step, which holds at most this many.
    const int max_rows = core_->config().scheduler.max_logits_rows;
    const int64_t rows = static_cast<int64_t>(request.prompt_token_ids.size()) - 1 +
                         (request.sampling.max_tokens > 0 ? 1 : 0);
    if (max_rows > 0 && rows > max_rows) {
      return Status::InvalidArgument(
          "prompt_logprobs over " + std::to_string(request.prompt_token_ids.size()) +
          " prompt tokens need " + std::to_string(rows) + " logits rows in one step, more than " +
          std::to_string(max_rows) + ": enable chunked prefill, or score a shorter prompt");
    }
  }
  auto state = std::make_unique<RequestState>();
  if (request.kind == RequestKind::kGenerate &&
      request.sampling.response_format.type != ResponseFormat::Type::kText) {
    KILN_ASSIGN_OR_RETURN(state->constraint, MakeConstraint(request.sampling.response_format));
  }
  state->kind = request.kind;
  state->return_all_hidden = request.return_all_hidden;
  state->priority = request.priority;
  state->token_ids = std::move(request.prompt_token_ids);
  state->kv.extra_keys = std::move(request.cache_salt);
  state->arrival_time = std::chrono::steady_clock::now();
  state->user_data = std::make_shared<OutputCallback>(std::move(callback));
  state->sampling = std::move(request.sampling);
  state->request_id = std::move(request.request_id);  // empty → assigned when enqueued
  return state;
}

StatusOr<std::unique_ptr<TokenConstraint>> Engine::Impl::MakeConstraint(
    const ResponseFormat& format) {
  TokenConstraintFactory factory;
  {
    std::lock_guard<std::mutex> lock(mu_);
    factory = constraint_factory_;
  }
  if (!factory) {
    return Status::Unimplemented(
        "response_format (structured output) needs a tokenizer: this engine was created "
        "without one, so it has no constraint factory (load a model with a tokenizer)");
  }
  return factory(format, info_.vocab_size);
}

Status Engine::Impl::PrepareResponseFormat(const ResponseFormat& format) {
  if (format.type == ResponseFormat::Type::kText) return Status::Ok();
  return MakeConstraint(format).status();
}

StatusOr<std::vector<std::string>> Engine::Impl::EnqueueLocked(
    std::vector<std::unique_ptr<RequestState>>* states) {
  if (stopping_) return Status::FailedPrecondition("the engine is shutting down");
  const int64_t waiting = metrics_.num_waiting + static_cast<int64_t>(pending_submits_.size());
  if (waiting + static_cast<int64_t>(states->size()) > options_.scheduler.max_waiting_requests) {
    return Status::ResourceExhausted("the waiting queue is full (" +
                                     std::to_string(options_.scheduler.max_waiting_requests) +
                                     " requests)");
  }
  // Check every explicit id first, so that a rejected batch enqueues nothing.
  for (size_t i = 0; i < states->size(); ++i) {
    const std::string& id = (*states)[i]->request_id;
    if (id.empty()) continue;
    bool dup_in_batch = false;
    for (size_t k = 0; k < i; ++k) dup_in_batch |= (*states)[k]->request_id == id;
    if (live_ids_.count(id) != 0 || dup_in_batch) {
      return Status::InvalidArgument("request_id \"" + id + "\" is already in use");
    }
  }
  std::vector<std::string> ids;
  for (auto& state : *states) {
    std::string id = std::move(state->request_id);
    if (id.empty()) {
      do {
        id = "req-" + std::to_string(next_id_++);
      } while (live_ids_.count(id) != 0);
    }
    state->request_id = id;
    state->seed = state->sampling.seed.has_value() ? *state->sampling.seed : seed_rng_();
    state->arrival_seq = static_cast<int64_t>(next_id_++);
    live_ids_.insert(id);
    pending_submits_.push_back(std::move(state));
    ids.push_back(std::move(id));
  }
  engine_cv_.notify_one();
  return ids;
}

void Engine::Impl::Abort(const std::string& request_id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (live_ids_.count(request_id) == 0) return;
  pending_aborts_.push_back(request_id);
  engine_cv_.notify_one();
}

EngineMetrics Engine::Impl::Metrics() const {
  std::lock_guard<std::mutex> lock(mu_);
  return metrics_;
}

void Engine::Impl::EngineLoop() {
  std::vector<std::unique_ptr<RequestState>> submits;
  std::vector<std::string> aborts;
  std::vector<EngineOutput> outputs;
  for (;;) {
    bool stop = false;
    bool abort_all = false;
    bool check = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      engine_cv_.wait(lock, [&] {
        return !pending_submits_.empty() || !pending_aborts_.empty() || stopping_ ||
               invariant_checks_requested_ > invariant_checks_done_ || core_->has_work();
      });
      submits.swap(pending_submits_);
      aborts.swap(pending_aborts_);
      stop = stopping_;
      abort_all = abort_running_;
      check = invariant_checks_requested_ > invariant_checks_done_;
    }
    for (auto& s : submits) core_->AddRequest(std::move(s));
    submits.clear();
    for (const std::string& id : aborts) core_->AbortRequest(id, &outputs);
    aborts.clear();
    if (stop && abort_all) core_->AbortAll(&outputs);
    if (check) {
      Status s = core_->CheckInvariants();
      std::lock_guard<std::mutex> lock(mu_);
      invariant_status_ = s;
      invariant_checks_done_ = invariant_checks_requested_;
      invariant_cv_.notify_all();
    }
    if (core_->has_work()) core_->Step(&outputs);
    const bool done = stop && !core_->has_work();
    {
      std::lock_guard<std::mutex> lock(mu_);
      metrics_ = core_->metrics();
      for (const EngineOutput& o : outputs) {
        if (o.output.finished) live_ids_.erase(o.output.request_id);
      }
    }
    if (!outputs.empty()) {
      std::lock_guard<std::mutex> lock(out_mu_);
      for (EngineOutput& o : outputs) out_queue_.push_back(std::move(o));
      out_cv_.notify_one();
    }
    outputs.clear();
    if (done) {
      std::lock_guard<std::mutex> lock(mu_);
      if (pending_submits_.empty()) break;  // (Submit refuses once stopping_, so this holds)
    }
  }
  std::lock_guard<std::mutex> lock(out_mu_);
  out_done_ = true;
  out_cv_.notify_one();
}

void Engine::Impl::OutputLoop() {
  std::deque<EngineOutput> batch;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(out_mu_);
      out_cv_.wait(lock, [&] { return !out_queue_.empty() || out_done_; });
      if (out_queue_.empty() && out_done_) return;
      batch.swap(out_queue_);
    }
    for (EngineOutput& o : batch) {
      auto* callback = static_cast<OutputCallback*>(o.user_data.get());
      if (callback != nullptr && *callback) (*callback)(std::move(o.output));
    }
    batch.clear();
  }
}

void Engine::Impl::Shutdown(bool abort_running) {
  if (std::this_thread::get_id() == output_thread_.get_id()) {
    // Called from a callback: the output thread cannot join itself. Stop accepting and let the
    // owner's later Shutdown (or the destructor) join.
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    abort_running_ = abort_running_ || abort_running;
    engine_cv_.notify_one();
    return;
  }
  std::lock_guard<std::mutex> shutdown_lock(shutdown_mu_);
  if (joined_) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    abort_running_ = abort_running_ || abort_running;
    engine_cv_.notify_one();
  }
  if (engine_thread_.joinable()) engine_thread_.join();
  if (output_thread_.joinable()) output_thread_.join();
  std::lock_guard<std::mutex> lock(mu_);
  joined_ = true;
  invariant_cv_.notify_all();
}

// ---- Engine forwarding -----------------------------------------------------------------------

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

StatusOr<std::string> Engine::Submit(Request request, OutputCallback callback) {
  return impl_->Submit(std::move(request), std::move(callback));
}

StatusOr<std::unique_ptr<RequestStream>> Engine::Submit(Request request) {
  auto stream = std::make_unique<RequestStream>();
  std::shared_ptr<RequestStream::State> state = stream->state_;
  KILN_ASSIGN_OR_RETURN(std::string id,
                        impl_->Submit(std::move(request), [state](RequestOutput out) {
                          std::lock_guard<std::mutex> lock(state->mu);
                          if (out.finished) state->final_queued = true;
                          state->outputs.push_back(std::move(out));
                          state->cv.notify_all();
                        }));
  stream->request_id_ = std::move(id);
  return stream;
}

StatusOr<std::vector<std::string>> Engine::SubmitBatch(std::vector<Request> requests,
                                                       std::vector<OutputCallback> callbacks) {
  return impl_->SubmitBatch(std::move(requests), std::move(callbacks));
}

Status Engine::PrepareResponseFormat(const ResponseFormat& format) {
  return impl_->PrepareResponseFormat(format);
}

void Engine::Abort(const std::string& request_id) { impl_->Abort(request_id); }
void Engine::Shutdown(bool abort_running) { impl_->Shutdown(abort_running); }
EngineMetrics Engine::Metrics() const { return impl_->Metrics(); }
const ModelInfo& Engine::model_info() const { return impl_->model_info(); }
const EngineOptions& Engine::options() const { return impl_->options(); }
const Tokenizer* Engine::tokenizer() const { return impl_->tokenizer(); }

}  // namespace kiln
