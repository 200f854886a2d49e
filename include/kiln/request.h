// What a caller asks the engine for: a Request (prompt token ids + what to produce) with its
// SamplingParams and ResponseFormat. Plain value types; Validate() checks ranges against a vocab
// size and returns InvalidArgument naming the offending field.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kiln/status.h"

namespace kiln {

// Constrained-output request. kText means unconstrained.
struct ResponseFormat {
  enum class Type { kText, kJsonObject, kJsonSchema, kRegex, kChoice, kGrammar };
  Type type = Type::kText;
  std::string json_schema;           // kJsonSchema: the schema as JSON text
  std::string regex;                 // kRegex
  std::vector<std::string> choices;  // kChoice
  std::string grammar;               // kGrammar: GBNF text
};

struct SamplingParams {
  // temperature == 0 → greedy (argmax). Sampling is reproducible: the same seed, prompt and
  // params give the same tokens (counter-based RNG keyed by (seed, output position)).
  float temperature = 1.0f;
  int top_k = 0;          // 0 or -1 → disabled
  float top_p = 1.0f;     // (0, 1]
  float min_p = 0.0f;     // [0, 1]
  std::optional<uint64_t> seed;
  float repetition_penalty = 1.0f;  // HF semantics, over prompt + output tokens; 1 = off
  float presence_penalty = 0.0f;    // OpenAI semantics, over output tokens
  float frequency_penalty = 0.0f;   // OpenAI semantics, over output tokens
  int max_tokens = 16;              // new tokens to generate; 0 → prefill the prompt only
  int min_tokens = 0;               // EOS / stop ids masked until this many were generated
  bool ignore_eos = false;
  std::vector<int32_t> stop_token_ids;  // besides the model's EOS ids
  // Logprobs: number of top alternatives per generated position (-1 → none, 0 → chosen only).
  int logprobs = -1;
  // Token ids whose logprobs are reported at every generated position (classification, scoring).
  std::vector<int32_t> chosen_logprob_token_ids;
  // Prompt logprobs (scoring a text, e.g. lm-eval's loglikelihood): for every prompt position
  // after the first, the logprob of the prompt's own token there and the top N alternatives
  // (-1 → none, 0 → the prompt token's only). Computed over the whole prompt: such a request never
  // starts from the prefix cache. Reported in the request's first output.
  int prompt_logprobs = -1;
  ResponseFormat response_format;

  bool greedy() const { return temperature <= 0.0f; }
  Status Validate(int vocab_size) const;
};

// What the engine should produce for a request.
enum class RequestKind {
  kGenerate,  // autoregressive generation
  kEmbed,     // final hidden states of the prompt (pooled by the caller), no generation
  kScore,     // logprobs of chosen_logprob_token_ids at the position after the prompt; no sampling
};

struct Request {
  std::string request_id;  // unique among live requests; empty → the engine assigns one
  std::vector<int32_t> prompt_token_ids;
  SamplingParams sampling;
  RequestKind kind = RequestKind::kGenerate;
  // Embedding: which prompt rows' final hidden states are returned: all rows when true, else only
  // the last.
  bool return_all_hidden = false;
  // Salt mixed into the prefix-cache hash of every block: requests with different salts never
  // share cached KV.
  std::string cache_salt;
  // Waiting-queue order: lower first, ties by arrival (running requests are not reordered).
  int priority = 0;
};

}  // namespace kiln
