// OpenAI / vLLM request and response JSON ⇄ kiln types (include/kiln/request.h, output.h). Pure:
// no I/O, no engine, no globals; every function is reentrant and unit-testable.
//
// Parsing validates types and ranges and reports the first problem as an ApiError naming the
// field (`param`). It does not tokenize: prompts stay text (or ids) until the handler, which knows
// the tokenizer, the vocabulary size and max_model_len, turns them into token ids.
// Rendering builds the response bodies (chat.completion, chat.completion.chunk, text_completion)
// from per-choice results; JSON text is produced with invalid UTF-8 replaced, never throwing.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/output.h"
#include "kiln/request.h"
#include "kiln/tokenizer.h"
#include "server/api_error.h"

namespace kiln::server {

// Requests are parsed keeping object key order (tool schemas reach the chat template as written).
using json = nlohmann::ordered_json;

enum class ApiKind { kChat, kCompletion };

// One prompt of a completions request before tokenization: text or token ids.
struct PromptSpec {
  bool is_text = true;
  std::string text;
  std::vector<int32_t> token_ids;
};

// A parsed /v1/chat/completions or /v1/completions request.
struct GenerateRequest {
  ApiKind kind = ApiKind::kChat;
  std::string model;  // empty → the served model
  // Chat: messages with content normalized to strings; template options.
  json messages;
  ChatTemplateOptions chat_options;
  // Completions: one or more prompts.
  std::vector<PromptSpec> prompts;
  bool add_special_tokens = false;  // chat default false, completions default true

  SamplingParams sampling;
  bool max_tokens_set = false;  // false → the handler fills max_model_len - prompt length
  int n = 1;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool echo = false;  // completions: the prompt; chat: the continued final assistant message
  int priority = 0;   // waiting-queue order, lower first
  std::vector<std::string> stop;
  bool include_stop_str_in_output = false;
  bool skip_special_tokens = true;
  bool logprobs = false;  // chat: logprobs == true; completions: logprobs != null
  int top_logprobs = 0;   // alternatives per position
  // Extra ids (or single-token strings resolved by the handler) whose logprobs are reported at
  // every generated position ("logprob_token_ids").
  std::vector<int32_t> logprob_token_ids;
  std::vector<std::string> logprob_token_strings;
  std::string user;
  // Part of every prompt block's prefix-cache key: requests share cached KV only when their salts
  // are equal (vLLM's "cache_salt"; empty → the unsalted cache).
  std::string cache_salt;
  // The request field that asked for structured output ("response_format", "guided_regex",
  // "structured_outputs.json", ...), named by errors from compiling it; empty when none.
  std::string structured_param;
};

// Request bodies may nest arrays/objects at most this deep (the top-level object is level 1).
// Checked on the raw text before parsing, so that no later copy, walk or dump of the value (nor the
// chat template's conversion of messages, tools or kwargs) can recurse without bound.
inline constexpr int kMaxJsonDepth = 128;

// Prompts × n of one completions request (and inputs of one embeddings/classify request) at most:
// one request must not be able to fill the engine's whole waiting queue.
inline constexpr int kMaxSequencesPerRequest = 1024;

// Parses `text` as a JSON object. Malformed JSON, a non-object or nesting deeper than
// kMaxJsonDepth → 400.
std::optional<ApiError> ParseJsonBody(std::string_view text, json* out);
// The deepest array/object nesting in JSON text (strings skipped); stops counting once it passes
// `limit` and returns limit + 1. Malformed text gives a meaningless but bounded answer.
int JsonNestingDepth(std::string_view text, int limit);

// Optional fields read outside the chat/completions parsers (/tokenize, /v1/embeddings): absent or
// null leave *out unchanged; a value of another type is a 400 naming the field.
std::optional<ApiError> ReadOptionalString(const json& body, const char* name, std::string* out);
std::optional<ApiError> ReadOptionalBool(const json& body, const char* name, bool* out);

std::optional<ApiError> ParseChatRequest(const json& body, GenerateRequest* out);
std::optional<ApiError> ParseCompletionRequest(const json& body, GenerateRequest* out);

// Checks ids against the vocabulary; `param` names the field in errors. (Prompt lengths are
// checked by kiln::Generator::Prepare.)
std::optional<ApiError> CheckTokenIds(const std::vector<int32_t>& ids, int vocab_size,
                                      const char* param);

// The request field an engine validation error is about: Engine::Submit's messages start with the
// SamplingParams field ("top_p must be in (0, 1], got 0"); mapped to its API name ("top_p",
// "max_tokens", "logprob_token_ids", ...). Empty when the message names no known field.
std::string EngineErrorParam(const std::string& message);

// ---- responses ---------------------------------------------------------------------------------

// What one choice produced (the handler fills it while the request runs).
struct ChoiceResult {
  int index = 0;
  std::string text;
  std::vector<PositionLogprobs> logprobs;  // one per generated token kept
  std::string finish_reason;               // "stop" | "length" | "abort" | "error" | ""
  // Completions with echo and logprobs: the prompt's ids and logprobs (entry i is position i + 1),
  // listed before the generated tokens'.
  std::vector<int32_t> prompt_token_ids;
  std::vector<PositionLogprobs> prompt_logprobs;
  int echo_chars = 0;  // characters of the echoed prompt text (the generated tokens' first offset)
  json stop_reason;    // vLLM's: the stop string or stop_token_ids id that ended it, else null
};

// vLLM's stop_reason of a finished choice: the matched stop string, else the id when it is one of
// the request's stop_token_ids, else null (EOS, length, abort).
json StopReason(const GenerateRequest& request, const std::string& matched_stop,
                int32_t stop_token_id);

struct UsageTotals {
  int prompt_tokens = 0;
  int completion_tokens = 0;
  int cached_tokens = 0;
};

struct ResponseMeta {
  std::string id;
  int64_t created = 0;
  std::string model;
};

json RenderUsage(const UsageTotals& usage);
// Chat shape: {"content": [{"token","logprob","bytes","top_logprobs":[...]}]}.
json RenderChatLogprobs(const std::vector<PositionLogprobs>& positions, const Tokenizer& tokenizer,
                        int top_logprobs);
// Completions shape: {"tokens","token_logprobs","top_logprobs","text_offset"}; offsets start at
// `text_offset`.
json RenderCompletionLogprobs(const std::vector<PositionLogprobs>& positions,
                              const Tokenizer& tokenizer, int top_logprobs, int text_offset);
// The same for an echoed prompt (echo + logprobs): the first prompt token with null logprob and
// top_logprobs, then `prompt_logprobs`, then `generated`. Offsets count characters of the tokens'
// own bytes; the generated ones start at `generated_offset` (the echoed text's length) and the
// prompt's end there too (what the echoed text lacks at its start, e.g. a BOS or SentencePiece's
// leading space, shifts the prompt offsets down, clamped at 0).
json RenderEchoedCompletionLogprobs(const std::vector<int32_t>& prompt_token_ids,
                                    const std::vector<PositionLogprobs>& prompt_logprobs,
                                    const std::vector<PositionLogprobs>& generated,
                                    const Tokenizer& tokenizer, int top_logprobs,
                                    int generated_offset);

std::string RenderChatResponse(const ResponseMeta& meta, const GenerateRequest& request,
                               const std::vector<ChoiceResult>& choices, const UsageTotals& usage,
                               const Tokenizer& tokenizer);
std::string RenderCompletionResponse(const ResponseMeta& meta, const GenerateRequest& request,
                                     const std::vector<ChoiceResult>& choices,
                                     const UsageTotals& usage, const Tokenizer& tokenizer);

// One streamed chunk for one choice (chat: delta; completions: text). `first` adds the chat
// role delta; `finish_reason` empty → null. `logprobs` may be empty. `stop_reason` is set on the
// finishing chunk (null elsewhere).
json RenderStreamChunk(const ResponseMeta& meta, const GenerateRequest& request, int index,
                       bool first, const std::string& delta_text,
                       const std::vector<PositionLogprobs>& logprobs, int text_offset,
                       const std::string& finish_reason, const Tokenizer& tokenizer,
                       const json& stop_reason = nullptr);
// The final usage-only chunk (stream_options.include_usage).
json RenderUsageChunk(const ResponseMeta& meta, const GenerateRequest& request,
                      const UsageTotals& usage);

// "data: <json>\n\n" and "data: [DONE]\n\n".
std::string SseEvent(const json& data);
std::string SseDone();

// JSON text with invalid UTF-8 replaced by U+FFFD (never throws).
std::string DumpJson(const json& j);

// The text of token `id` for logprob displays (its bytes in context, e.g. " the").
std::string TokenDisplay(const Tokenizer& tokenizer, int32_t id);

}  // namespace kiln::server
