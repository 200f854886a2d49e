// Text generation over an Engine: the one place where a text request becomes engine requests and
// engine outputs become text. A Generator renders the chat template (with assistant prefill:
// continue_final_message / a partial last message), tokenizes, checks token ids and lengths
// against the model, submits `n` engine requests per prompt (seed + j for choice j), feeds each
// choice's incremental detokenizer the prompt's tail for context, applies stop strings (a stop
// string never leaks, also when split across tokens), collects logprobs and usage, and reports
// streaming deltas and one final GenerationResult. The server, `kiln generate` and the workflow
// engine are its clients; none of them tokenizes or detokenizes a generation itself.
//
// Not responsible for: JSON or HTTP (server/), grammar compiles (Engine::PrepareResponseFormat,
// which a caller may run before Start), worker threads (Prepare runs on the calling thread:
// servers call it on a worker pool, never on an I/O thread).
//
// Two steps: Prepare() (render + tokenize + validate; CPU-heavy for long prompts, touches no
// engine state) and Start() (submit; cheap). Generate() does both and waits.
//
// Example (blocking; the reply continues an assistant prefill and streams to stdout):
//   Generator generator(engine);
//   GenerationRequest r;
//   r.messages = nlohmann::ordered_json::array({{{"role", "user"}, {"content", "Hi!"}}});
//   r.assistant_prefill = "Well,";
//   r.sampling.max_tokens = 64;
//   auto result = generator.Generate(r, [](const GenerationDelta& d, const GenerationChoice&) {
//     std::fputs(d.text.c_str(), stdout);
//   });  // result->choices[0].text: the reply after "Well,"; result->usage: token counts
//
// Threading: Generator is immutable after construction and thread-safe. A Generation's events
// (on_delta, then on_done exactly once) never run concurrently and arrive in order: through
// `GenerationCallbacks::executor` when one is given (e.g. a connection's strand), else on the
// engine's output thread. on_done runs for every started Generation, also after Cancel() (the
// unfinished choices then end with FinishReason::kAbort). Cancel() and Wait() may be called from
// any thread; Wait() must not be called from an event callback.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kiln/output.h"
#include "kiln/request.h"
#include "kiln/status.h"
#include "kiln/tokenizer.h"

namespace kiln {

class Engine;

// One completion prompt: text (tokenized with the request's add_special_tokens) or token ids.
struct GenerationPrompt {
  bool is_text = true;
  std::string text;
  std::vector<int32_t> token_ids;

  static GenerationPrompt Text(std::string text) { return {true, std::move(text), {}}; }
  static GenerationPrompt TokenIds(std::vector<int32_t> ids) { return {false, "", std::move(ids)}; }
};

struct GenerationRequest {
  // The input, one of:
  //  - chat: `messages` is a non-null array of {role, content (string or null), ...} objects,
  //    rendered with the chat template (`chat_options.chat_template`, else the generator's, else
  //    the tokenizer's). Assistant prefill: a last assistant message with
  //    chat_options.continue_final_message (add_generation_prompt false) is continued, not closed.
  //  - completions: `prompts` (one or more), each run `n` times.
  nlohmann::ordered_json messages;
  ChatTemplateOptions chat_options;
  std::vector<GenerationPrompt> prompts;
  // Chat: render with continue_final_message after appending {"role": "assistant", "content":
  // assistant_prefill}; the model's reply continues this text (see also `echo`).
  std::string assistant_prefill;
  bool add_special_tokens = false;  // tokenizer post-processing (BOS): chat false, completions true

  // Sampling: max_tokens, seed (choice j uses seed + j), logprobs (top-N per position, -1 none),
  // chosen_logprob_token_ids, stop_token_ids, response_format... as the engine takes them.
  SamplingParams sampling;
  // True → sampling.max_tokens is replaced by what fits: max_model_len - prompt length.
  bool fill_max_tokens = false;
  // Single-token strings whose ids are appended to sampling.chosen_logprob_token_ids.
  std::vector<std::string> logprob_token_strings;
  int n = 1;                      // choices per prompt
  std::vector<std::string> stop;  // stop strings (not token ids); empty strings are ignored
  bool include_stop_str_in_output = false;  // also keeps a stop token id's text
  bool skip_special_tokens = true;
  // The text starts with the prompt: completions the prompt text (token-id prompts decoded);
  // chat the content of the continued final assistant message (the prefill).
  bool echo = false;
  std::string request_id;  // prefix of the engine request ids ("<id>-<choice>"); empty → generated
  std::string cache_salt;  // passed to every engine request
  int priority = 0;        // passed to every engine request (waiting-queue order, lower first)
};

// A prompt after Prepare: token ids, the text `echo` puts first, max_tokens resolved.
struct PreparedPrompt {
  std::vector<int32_t> token_ids;
  std::string echo_text;
  int max_tokens = 0;
};

// What Start() takes: the request (logprob_token_strings resolved into
// sampling.chosen_logprob_token_ids) and one PreparedPrompt per prompt (chat: exactly one).
struct PreparedGeneration {
  GenerationRequest request;
  std::vector<PreparedPrompt> prompts;
  size_t num_choices() const { return prompts.size() * static_cast<size_t>(request.n); }
};

// The state of one choice (index = prompt_index * n + j).
struct GenerationChoice {
  int index = 0;
  int prompt_index = 0;
  std::string text;                        // echo text + generated text (stop string cut)
  std::vector<int32_t> token_ids;          // generated ids consumed, incl. a final stop token id
  std::vector<PositionLogprobs> logprobs;  // one per consumed token when logprobs were asked for
  // sampling.prompt_logprobs >= 0: the prompt's ids and, once the engine reported them, their
  // logprobs (entry i is position i + 1: the first prompt token has none).
  std::vector<int32_t> prompt_token_ids;
  std::vector<PositionLogprobs> prompt_logprobs;
  int echo_chars = 0;  // characters (code points) of the echo text at the start of `text`
  bool finished = false;
  FinishReason finish_reason = FinishReason::kNone;  // kStop also for a stop string
  std::string matched_stop;                          // the stop string that ended it, or empty
  int32_t stop_token_id = -1;  // the stop / EOS id that ended it (RequestOutput::stop_token_id)
  Status error;                                      // set when finish_reason == kError
  Usage usage;  // completion_tokens counts consumed tokens when a stop string cut
  double time_to_first_token_s = 0.0;
  double elapsed_s = 0.0;
};

// One streamed step of one choice: new text and/or logprobs, or its end.
struct GenerationDelta {
  int index = 0;
  std::string text;
  std::vector<PositionLogprobs> logprobs;
  // The prompt logprobs, in the delta where they arrived (before any generated token's).
  std::vector<PositionLogprobs> prompt_logprobs;
  int text_offset = 0;  // offset in characters (code points) in the choice's text of the first
                        // token in `logprobs` (OpenAI's text_offset)
  bool finished = false;
  FinishReason finish_reason = FinishReason::kNone;
  Status error;  // set when finished with kError
};

struct GenerationResult {
  std::vector<GenerationChoice> choices;
  // Prompt and cached tokens count once per prompt; completion tokens are summed over choices.
  Usage usage;
  Status error;  // the first failed choice's error, else Ok
  bool cancelled = false;
};

struct GenerationCallbacks {
  // Called when a choice has new text or logprobs, and once when it finishes. `choice` is its
  // cumulative state (valid only during the call).
  std::function<void(const GenerationDelta& delta, const GenerationChoice& choice)> on_delta;
  // Called once, after the last choice finished.
  std::function<void(const GenerationResult& result)> on_done;
  // Runs every event handler (including detokenization); null → the engine's output thread. It
  // must run the tasks it is given in order, one at a time (a strand, a serial queue), and every
  // one of them: a dropped task loses its events and on_done.
  std::function<void(std::function<void()>)> executor;
};

struct GeneratorOptions {
  std::string chat_template;           // non-empty → overrides the tokenizer's chat template
  int detokenizer_context_tokens = 4;  // prompt tokens fed to a detokenizer before the output
  Status Validate() const;
};

// A started generation. Kept alive by its engine callbacks until on_done has run.
class Generation final {
 public:
  ~Generation();
  Generation(const Generation&) = delete;
  Generation& operator=(const Generation&) = delete;

  // Aborts the unfinished engine requests (they end with kAbort). Idempotent.
  void Cancel();
  // Blocks until on_done has run; returns the result.
  GenerationResult Wait();
  size_t num_choices() const;

  class Impl;

 private:
  friend class Generator;
  explicit Generation(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

class Generator final {
 public:
  // `engine` must outlive the Generator and every Generation it started; `options` must be valid
  // (Validate(); checked).
  explicit Generator(Engine* engine, GeneratorOptions options = {});
  ~Generator();
  Generator(const Generator&) = delete;
  Generator& operator=(const Generator&) = delete;

  // Renders, tokenizes and validates. Errors: InvalidArgument (no tokenizer or chat template for
  // a text input, template errors, ids outside the vocabulary, a logprob string that is not one
  // token, an empty prompt), OutOfRange (prompt + max_tokens > max_model_len; a prompt whose byte
  // size alone proves it too long is refused before it is tokenized). `error_field` (optional)
  // receives the request field at fault, as the OpenAI API names it: "messages", "prompt",
  // "chat_template" (a template the request brought fails), "stop_token_ids",
  // "logprob_token_ids".
  StatusOr<PreparedGeneration> Prepare(GenerationRequest request,
                                       std::string* error_field = nullptr) const;
  // Submits every choice at once (Engine::SubmitBatch: admitted in the same step). `prepared`
  // comes from Prepare. On an engine error (reported as Engine::Submit reports it, e.g.
  // InvalidArgument for sampling parameters, ResourceExhausted for a full queue) nothing runs and
  // no callback is called.
  StatusOr<std::unique_ptr<Generation>> Start(PreparedGeneration prepared,
                                              GenerationCallbacks callbacks) const;
  // Prepare + Start + Wait. `on_delta` (optional) runs on the engine's output thread.
  StatusOr<GenerationResult> Generate(
      GenerationRequest request,
      std::function<void(const GenerationDelta&, const GenerationChoice&)> on_delta = nullptr,
      std::string* error_field = nullptr) const;

  // Chat messages → prompt token ids (template + tokenize), as Prepare does for chat requests.
  // Renders are bounded while they run (template amplification): Prepare's at max_prompt_bytes()
  // (a longer prompt is refused anyway), RenderChat's (no length limit: /tokenize) at the larger
  // of that and 4 × the messages' JSON size. `error_field` (optional) receives "chat_template" when a template the
  // request brought fails, else "messages".
  StatusOr<std::vector<int32_t>> RenderChat(const nlohmann::ordered_json& messages,
                                            const ChatTemplateOptions& options,
                                            bool add_special_tokens,
                                            std::string* error_field = nullptr) const;

  // The longest prompt text that can fit in max_model_len tokens: max_model_len × the longest
  // token's bytes × 2 (room for normalizers that shrink text: NFKC, lowercase), at least 64 KiB.
  // Longer texts are refused without tokenizing them (a normalizer that deletes most of a text,
  // Strip or Replace with "", could have let one fit).
  size_t max_prompt_bytes() const;
  // OutOfRange ("... it was rejected without tokenizing.") past max_prompt_bytes(); Ok without a
  // tokenizer.
  Status CheckPromptBytes(size_t num_bytes) const;

  const Tokenizer* tokenizer() const { return tokenizer_; }
  Engine* engine() const { return engine_; }
  // min(model's max_model_len, EngineOptions::scheduler.max_model_len when set).
  int max_model_len() const { return max_model_len_; }

 private:
  StatusOr<std::string> RenderChatText(const nlohmann::ordered_json& messages,
                                       const ChatTemplateOptions& options,
                                       size_t max_rendered_bytes) const;
  // Tokenizes `text`, unless it is longer than max_prompt_bytes().
  Status Encode(const std::string& text, const GenerationRequest& request,
                std::vector<int32_t>* ids) const;
  // Checks prompt + max_tokens against max_model_len and resolves *max_tokens.
  Status CheckLength(size_t num_prompt_tokens, const GenerationRequest& request,
                     int* max_tokens) const;

  Engine* engine_;
  GeneratorOptions options_;
  const Tokenizer* tokenizer_;
  int vocab_size_ = 0;
  int max_model_len_ = 0;
  size_t max_token_bytes_ = 0;  // the longest token's text (0 without a tokenizer)
  uint64_t id_salt_ = 0;        // random: generated request ids differ between Generators
  mutable std::atomic<uint64_t> next_id_{0};
};

}  // namespace kiln
