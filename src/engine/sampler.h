// Sampler glue: maps a request's SamplingParams and history to the SamplingRow a backend samples
// with (backend/backend.h defines the sampling semantics), and decides when a request stops.
//
//  - seed: the request's seed (a random one is drawn at submit when none was given); step = the
//    output position being sampled, so sampling is reproducible and independent of batching.
//  - penalties see the prompt and the output ids; EOS (unless ignore_eos) and stop_token_ids are
//    banned while fewer than min_tokens tokens were generated — unless a constraint (grammar)
//    allows nothing else, then the grammar wins (a fully masked row would fail the whole batch).
//  - stop conditions, checked after appending a token, in order: EOS id (unless ignore_eos) or a
//    stop_token_id → kStop (the id is kept in the output and reported as stop_token_id);
//    max_tokens reached or the sequence reached max_model_len → kLength.
//
// Pure functions over RequestState; engine thread only.
#pragma once

#include <cstdint>
#include <span>

#include "backend/backend.h"
#include "engine/request_state.h"

namespace kiln {

// Fills request->min_tokens_banned_ids from its params and the model's EOS ids, and the ids that
// are never sampled (logit rows past the tokenizer's vocabulary).
void InitStopIds(std::span<const int32_t> eos_token_ids,
                 std::span<const int32_t> never_sample_ids, RequestState* request);

// The row for the request's next position (kGenerate) or its score position (kScore).
// The spans point into `request`, which must not change until sampling is done.
void BuildSamplingRow(const RequestState& request, SamplingRow* row);

// Whether the request stops after its last token (already appended); sets *stop_token_id for kStop.
FinishReason CheckStop(const RequestState& request, std::span<const int32_t> eos_token_ids,
                       int max_model_len, int32_t* stop_token_id);

}  // namespace kiln
