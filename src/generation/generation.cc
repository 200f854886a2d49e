// Generation: one started request's choices, from engine outputs to text (incremental
// detokenization with prompt context, stop strings, logprobs, usage), and Generator::Start /
// Generate. The contract is in include/kiln/generation.h.
#include "kiln/generation.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <span>

#include "common/check.h"
#include "common/utf8_encode.h"
#include "generation/stop_matcher.h"
#include "kiln/engine.h"

namespace kiln {

class Generation::Impl final : public std::enable_shared_from_this<Generation::Impl> {
 public:
  Impl(Engine* engine, const Tokenizer* tokenizer, GenerationCallbacks callbacks)
      : engine_(engine), tokenizer_(tokenizer), callbacks_(std::move(callbacks)) {}

  // Builds the choices and their engine requests (index = prompt * n + j).
  std::vector<Request> Setup(PreparedGeneration prepared, const std::string& id_prefix,
                             int context_tokens) {
    request_ = std::move(prepared.request);
    const size_t n = static_cast<size_t>(request_.n);
    choices_.resize(prepared.num_choices());
    std::vector<Request> requests;
    requests.reserve(choices_.size());
    for (size_t p = 0; p < prepared.prompts.size(); ++p) {
      const PreparedPrompt& prompt = prepared.prompts[p];
      for (size_t j = 0; j < n; ++j) {
        const size_t idx = p * n + j;
        ChoiceState& c = choices_[idx];
        c.request_id = id_prefix + "-" + std::to_string(idx);
        c.choice.index = static_cast<int>(idx);
        c.choice.prompt_index = static_cast<int>(p);
        if (tokenizer_ != nullptr) {
          c.detokenizer = tokenizer_->NewDetokenizer(request_.skip_special_tokens);
          // The prompt's tail gives the first output token its decoding context (e.g. the
          // leading space SentencePiece pieces carry); its own text is never emitted.
          const std::span<const int32_t> ids(prompt.token_ids);
          const size_t ctx = std::min(ids.size(), static_cast<size_t>(context_tokens));
          c.detokenizer->Prime(ids.subspan(ids.size() - ctx));
        }
        c.stop = std::make_unique<StopMatcher>(request_.stop, request_.include_stop_str_in_output);
        if (request_.sampling.prompt_logprobs >= 0) c.choice.prompt_token_ids = prompt.token_ids;
        c.choice.text = prompt.echo_text;
        c.text_offset = Utf8CharCount(c.choice.text);
        c.choice.echo_chars = c.text_offset;

        Request r;
        r.request_id = c.request_id;
        r.prompt_token_ids = prompt.token_ids;
        r.sampling = request_.sampling;
        r.sampling.max_tokens = prompt.max_tokens;
        if (r.sampling.seed) r.sampling.seed = *r.sampling.seed + static_cast<uint64_t>(j);
        r.cache_salt = request_.cache_salt;
        r.priority = request_.priority;
        requests.push_back(std::move(r));
      }
    }
    return requests;
  }

  // Called on the engine's output thread.
  void Dispatch(size_t index, RequestOutput out) {
    if (callbacks_.executor) {
      callbacks_.executor([self = shared_from_this(), index, out = std::move(out)]() mutable {
        std::lock_guard<std::mutex> lock(self->serial_mu_);
        self->OnOutput(index, std::move(out));
      });
    } else {
      std::lock_guard<std::mutex> lock(serial_mu_);
      OnOutput(index, std::move(out));
    }
  }

  void Cancel() {
    cancelled_ = true;
    for (const auto& c : choices_) engine_->Abort(c.request_id);
  }

  GenerationResult Wait() {
    std::unique_lock<std::mutex> lock(done_mu_);
    done_cv_.wait(lock, [this] { return done_; });
    return result_;
  }

  size_t num_choices() const { return choices_.size(); }

 private:
  struct ChoiceState {
    std::string request_id;
    std::unique_ptr<IncrementalDetokenizer> detokenizer;  // null without a tokenizer
    std::unique_ptr<StopMatcher> stop;
    GenerationChoice choice;
    // Offset of the next token's text in characters (code points), as OpenAI's text_offset.
    int text_offset = 0;
  };

  std::string Detokenize(ChoiceState& c, int32_t id) {
    return c.detokenizer ? c.detokenizer->Push(id) : std::string();
  }

  void OnOutput(size_t index, RequestOutput out) {
    ChoiceState& c = choices_[index];
    GenerationChoice& choice = c.choice;
    if (choice.finished) return;  // e.g. the engine's final output after a stop string matched
    GenerationDelta delta;
    delta.index = choice.index;
    delta.text_offset = c.text_offset;
    const bool want_logprobs = request_.sampling.logprobs >= 0;
    if (!out.prompt_logprobs.empty()) {
      choice.prompt_logprobs = out.prompt_logprobs;
      delta.prompt_logprobs = std::move(out.prompt_logprobs);
    }
    const size_t num_new = out.new_token_ids.size();
    bool stopped_by_string = false;
    for (size_t i = 0; i < num_new && !stopped_by_string; ++i) {
      const int32_t id = out.new_token_ids[i];
      choice.token_ids.push_back(id);
      if (want_logprobs && i < out.logprobs.size()) {
        choice.logprobs.push_back(out.logprobs[i]);
        delta.logprobs.push_back(out.logprobs[i]);
        if (tokenizer_ != nullptr) c.text_offset += Utf8CharCount(tokenizer_->TokenBytes(id));
      }
      // A stop token id (EOS or stop_token_ids) ends the text without appearing in it.
      const bool is_stop_token =
          out.finished && i + 1 == num_new && out.stop_token_id >= 0 && id == out.stop_token_id;
      if (is_stop_token && !request_.include_stop_str_in_output) continue;
      // Stop strings count only past min_tokens (vLLM): before, the text goes through unchecked.
      const bool check_stop =
          choice.token_ids.size() > static_cast<size_t>(std::max(0, request_.sampling.min_tokens));
      delta.text += c.stop->Push(Detokenize(c, id), check_stop);
      if (c.stop->stopped()) {
        stopped_by_string = true;
        engine_->Abort(c.request_id);
      }
    }
    const bool done = out.finished || stopped_by_string;
    if (done) {
      if (!stopped_by_string) {
        delta.text += c.stop->Push(c.detokenizer ? c.detokenizer->Flush() : std::string(),
                                   choice.token_ids.size() > static_cast<size_t>(std::max(
                                                                 0, request_.sampling.min_tokens)));
        if (c.stop->stopped()) {
          stopped_by_string = true;
        } else {
          delta.text += c.stop->Flush();
        }
      }
      choice.finished = true;
      choice.finish_reason = stopped_by_string ? FinishReason::kStop : out.finish_reason;
      choice.matched_stop = c.stop->matched();
      if (!stopped_by_string) choice.stop_token_id = out.stop_token_id;
      choice.usage = out.usage;
      if (stopped_by_string) {
        choice.usage.completion_tokens = static_cast<int>(choice.token_ids.size());
      }
      if (out.finish_reason == FinishReason::kError && !stopped_by_string) {
        choice.error = out.error.ok() ? Status::Internal("the request failed") : out.error;
      }
      choice.time_to_first_token_s = out.time_to_first_token_s;
      choice.elapsed_s = out.elapsed_s;
      delta.finished = true;
      delta.finish_reason = choice.finish_reason;
      delta.error = choice.error;
      ++num_done_;
    }
    choice.text += delta.text;
    if (callbacks_.on_delta && (!delta.text.empty() || !delta.logprobs.empty() ||
                                !delta.prompt_logprobs.empty() || done)) {
      callbacks_.on_delta(delta, choice);
    }
    if (num_done_ == choices_.size()) Finish();
  }

  void Finish() {
    GenerationResult result;
    const size_t n = static_cast<size_t>(request_.n);
    for (size_t i = 0; i < choices_.size(); ++i) {
      const GenerationChoice& c = choices_[i].choice;
      if (i % n == 0) {  // prompt tokens count once per prompt
        result.usage.prompt_tokens += c.usage.prompt_tokens;
        result.usage.cached_tokens += c.usage.cached_tokens;
      }
      result.usage.completion_tokens += c.usage.completion_tokens;
      if (!c.error.ok() && result.error.ok()) result.error = c.error;
      result.choices.push_back(std::move(choices_[i].choice));
    }
    result.cancelled = cancelled_;
    if (callbacks_.on_done) callbacks_.on_done(result);
    {
      std::lock_guard<std::mutex> lock(done_mu_);
      result_ = std::move(result);
      done_ = true;
    }
    done_cv_.notify_all();
  }

  Engine* engine_;
  const Tokenizer* tokenizer_;
  GenerationCallbacks callbacks_;
  GenerationRequest request_;
  std::vector<ChoiceState> choices_;  // sized in Setup, then touched only by OnOutput / Finish
  size_t num_done_ = 0;
  std::atomic<bool> cancelled_{false};
  std::mutex serial_mu_;  // serializes OnOutput (also behind an executor)

  std::mutex done_mu_;
  std::condition_variable done_cv_;
  bool done_ = false;
  GenerationResult result_;
};

Generation::Generation(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Generation::~Generation() = default;
void Generation::Cancel() { impl_->Cancel(); }
GenerationResult Generation::Wait() { return impl_->Wait(); }
size_t Generation::num_choices() const { return impl_->num_choices(); }

StatusOr<std::unique_ptr<Generation>> Generator::Start(PreparedGeneration prepared,
                                                       GenerationCallbacks callbacks) const {
  KILN_CHECK(prepared.request.n >= 1 && !prepared.prompts.empty());
  std::string prefix = prepared.request.request_id;
  if (prefix.empty()) {
    char buf[48];
    std::snprintf(buf, sizeof(buf), "gen-%016llx-%llu", static_cast<unsigned long long>(id_salt_),
                  static_cast<unsigned long long>(next_id_.fetch_add(1)));
    prefix = buf;
  }
  auto impl = std::make_shared<Generation::Impl>(engine_, tokenizer_, std::move(callbacks));
  std::vector<Request> requests =
      impl->Setup(std::move(prepared), prefix, options_.detokenizer_context_tokens);
  std::vector<OutputCallback> outputs;
  outputs.reserve(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    outputs.push_back([impl, i](RequestOutput out) { impl->Dispatch(i, std::move(out)); });
  }
  // All choices go to the engine atomically: on an error nothing runs and no callback is called.
  auto submitted = engine_->SubmitBatch(std::move(requests), std::move(outputs));
  if (!submitted.ok()) {
    // Every choice carries the same parameters: report the error as Engine::Submit would, without
    // SubmitBatch's "request <i> of the batch: " context.
    const Status& s = submitted.status();
    const size_t context = s.message().find(" of the batch: ");
    if (s.message().rfind("request ", 0) == 0 && context != std::string::npos) {
      return Status(s.code(), s.message().substr(context + 15));
    }
    return s;
  }
  return std::unique_ptr<Generation>(new Generation(std::move(impl)));
}

StatusOr<GenerationResult> Generator::Generate(
    GenerationRequest request,
    std::function<void(const GenerationDelta&, const GenerationChoice&)> on_delta,
    std::string* error_field) const {
  KILN_ASSIGN_OR_RETURN(PreparedGeneration prepared, Prepare(std::move(request), error_field));
  GenerationCallbacks callbacks;
  callbacks.on_delta = std::move(on_delta);
  KILN_ASSIGN_OR_RETURN(std::unique_ptr<Generation> generation,
                        Start(std::move(prepared), std::move(callbacks)));
  return generation->Wait();
}

}  // namespace kiln
