// What the engine streams back for a request. Each RequestOutput carries the token ids produced
// since the previous output (a delta), so a stream of them concatenates to the full completion.
// The final output has finished == true, a finish_reason and usage.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kiln/status.h"

namespace kiln {

enum class FinishReason { kNone, kStop, kLength, kAbort, kError };
const char* FinishReasonName(FinishReason r);  // "stop" | "length" | "abort" | "error" | ""

struct TokenLogprob {
  int32_t token_id = 0;
  float logprob = 0.0f;
};

// Logprob information for one generated position.
struct PositionLogprobs {
  TokenLogprob chosen;                     // the sampled token
  std::vector<TokenLogprob> top;           // top-N by logprob, N = SamplingParams::logprobs
  std::vector<TokenLogprob> requested;     // SamplingParams::chosen_logprob_token_ids, in order
};

struct Usage {
  int prompt_tokens = 0;
  int completion_tokens = 0;
  int cached_tokens = 0;  // prompt tokens whose KV came from the prefix cache
};

struct RequestOutput {
  std::string request_id;
  std::vector<int32_t> new_token_ids;        // tokens produced since the last output
  std::vector<PositionLogprobs> logprobs;    // one per new token when logprobs were asked for
  // SamplingParams::prompt_logprobs: one per prompt position 1 .. prompt length - 1 (position 0
  // has none), `chosen` = the prompt's token there; only in the request's first output.
  std::vector<PositionLogprobs> prompt_logprobs;
  // kEmbed: final hidden states, row-major [rows, hidden_size] (rows = prompt length or 1).
  std::vector<float> hidden_states;
  int hidden_size = 0;
  // kScore: logprobs of the requested ids at the position after the prompt (log-softmax over the
  // whole vocabulary).
  std::vector<TokenLogprob> score_logprobs;
  bool finished = false;
  FinishReason finish_reason = FinishReason::kNone;
  int32_t stop_token_id = -1;  // the stop/EOS id that finished it, if any
  Status error;                // set when finish_reason == kError
  Usage usage;                 // filled in every output (cumulative)
  // Timing (seconds since submit) for metrics: first token, and this output.
  double time_to_first_token_s = 0.0;
  double elapsed_s = 0.0;
};

}  // namespace kiln
