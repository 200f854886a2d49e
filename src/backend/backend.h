// Backend: executes the model on a ForwardBatch and samples from the resulting logits. Two
// implementations: cpu/ (the reference, float32 math: the specification) and cuda/ (the fast one).
// Both implement exactly the same semantics; parity tests compare them.
//
// A Backend owns the model weights on its device and the paged KV cache
// (num_kv_blocks x block_size slots per layer). It is used by one thread (the engine thread).
//
// Call order per step: Forward(batch) → optionally SampleAsync(...) (+ WaitSample), GetLogits(),
// GetHidden() — all of which refer to the rows of the most recent Forward's logits_indices /
// hidden_indices.
//
// Async scheduling: SampleAsync only launches sampling; the next Forward may be issued before
// WaitSample and take tokens sampled by that SampleAsync through ForwardBatch::deferred_tokens, so
// that the host prepares step n+1 while the device runs step n:
//   Forward(n) → SampleAsync(n) → Forward(n+1, deferred from n) → WaitSample(n) → SampleAsync(n+1)
// Every SampleAsync is followed by exactly one WaitSample before the next SampleAsync. A backend
// may do all the work in SampleAsync (the CPU backend does: SampleReady() is then always true).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "backend/forward_batch.h"
#include "kiln/output.h"
#include "kiln/status.h"
#include "model/model_config.h"

namespace kiln {

// Sampling parameters of one logits row, aligned with ForwardBatch::logits_indices.
//
// Semantics (identical on every backend):
//  1. logprobs (chosen, top, requested) are log_softmax of the raw logits (before penalties,
//     temperature, masks), as vLLM reports them by default.
//  2. processed = raw logits; banned ids and ids not in allowed_token_bitmask → -inf;
//     repetition_penalty (HF: over prompt ∪ output ids, logit > 0 ? /p : *p);
//     frequency_penalty * count(id in output) and presence_penalty * [id in output] subtracted.
//  3. temperature <= 0 → argmax of processed (lowest id on ties). Otherwise processed / temperature,
//     softmax, then top_k (keep the k largest), top_p (smallest prefix of descending probs whose
//     mass ≥ top_p, always ≥ 1 token), min_p (drop p < min_p * p_max); the survivors' probabilities
//     are renormalized and one token is drawn by inverse CDF over them in descending-probability
//     order (ties by lower id) with u = SamplingUniform(seed, step): the first token whose
//     inclusive prefix mass exceeds u × (mass of the survivors), the last survivor if none does.
//     Masses (top_p's and the draw's) are sums of round(p × 2^31) as integers, so every
//     backend gets the same token whatever order it sums in.
struct SamplingRow {
  float temperature = 0.0f;
  int top_k = 0;  // <= 0 → off
  float top_p = 1.0f;
  float min_p = 0.0f;
  uint64_t seed = 0;
  int64_t step = 0;  // output position being sampled (0 for the first generated token)
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  std::span<const int32_t> prompt_token_ids;
  std::span<const int32_t> output_token_ids;
  int num_top_logprobs = -1;  // -1 → no logprobs; 0 → chosen only; N → top N as well
  std::span<const int32_t> requested_token_ids;
  // Bit i of word i/32 set → token i allowed. nullptr → all allowed. Sized ceil(vocab/32).
  const uint32_t* allowed_token_bitmask = nullptr;
  std::span<const int32_t> banned_token_ids;  // e.g. EOS while below min_tokens
};

struct SampleResult {
  int32_t token_id = 0;
  float logprob = 0.0f;  // raw log-softmax of the chosen id (valid when num_top_logprobs >= 0)
  std::vector<TokenLogprob> top;        // descending, ties by lower id
  std::vector<TokenLogprob> requested;  // in requested_token_ids order
};

// The uniform in [0, 1) used to sample at (seed, step): splitmix64 of seed ^ (step * golden),
// top 24 bits / 2^24. Identical on CPU and GPU.
inline float SamplingUniform(uint64_t seed, int64_t step) {
  uint64_t z = seed ^ (static_cast<uint64_t>(step) * 0x9E3779B97F4A7C15ull);
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z = z ^ (z >> 31);
  return static_cast<float>(z >> 40) * (1.0f / 16777216.0f);
}

// The batch's token ids with its deferred tokens filled from `sampled_ids` (the ids of the last
// SampleAsync, by logits row), for backends that resolve them on the host. InvalidArgument when
// an entry names a token row or sample row that does not exist.
inline Status ResolveDeferredTokens(const ForwardBatch& batch, std::span<const int32_t> sampled_ids,
                                    std::vector<int32_t>* token_ids) {
  *token_ids = batch.token_ids;
  for (const DeferredToken& d : batch.deferred_tokens) {
    if (d.token_row < 0 || d.token_row >= batch.num_tokens()) {
      return Status::InvalidArgument("deferred token row " + std::to_string(d.token_row) +
                                     " outside the batch");
    }
    if (d.sample_row < 0 || static_cast<size_t>(d.sample_row) >= sampled_ids.size()) {
      return Status::InvalidArgument("deferred token takes sample row " +
                                     std::to_string(d.sample_row) + " of a step that sampled " +
                                     std::to_string(sampled_ids.size()) + " rows");
    }
    (*token_ids)[static_cast<size_t>(d.token_row)] = sampled_ids[static_cast<size_t>(d.sample_row)];
  }
  return Status::Ok();
}

class Backend {
 public:
  virtual ~Backend() = default;

  virtual const ModelConfig& config() const = 0;
  virtual int block_size() const = 0;
  virtual int64_t num_kv_blocks() const = 0;

  // Runs the model over the batch: writes the new tokens' K/V into the cache at slot_mapping and
  // computes logits / hidden states for the requested rows.
  virtual Status Forward(const ForwardBatch& batch) = 0;
  // Launches sampling of one token per logits row of the last Forward (rows.size() ==
  // logits_indices.size()). The rows (and the spans they hold) are read before it returns.
  virtual Status SampleAsync(std::span<const SamplingRow> rows) = 0;
  // True when WaitSample would not block (the last SampleAsync's results are ready).
  virtual bool SampleReady() = 0;
  // The last SampleAsync's results, in row order (waits for them; does not wait for a Forward
  // issued after that SampleAsync). Errors of the sampling itself (e.g. every token masked) are
  // reported here or by SampleAsync.
  virtual Status WaitSample(std::vector<SampleResult>* results) = 0;
  // SampleAsync + WaitSample.
  Status Sample(std::span<const SamplingRow> rows, std::vector<SampleResult>* results) {
    KILN_RETURN_IF_ERROR(SampleAsync(rows));
    return WaitSample(results);
  }
  // Copies the last Forward's logits, row-major [logits_indices.size(), vocab_size], float32.
  virtual Status GetLogits(std::vector<float>* logits) = 0;
  // Copies the last Forward's final hidden states (after the final norm), row-major
  // [hidden_indices.size(), hidden_size], float32.
  virtual Status GetHidden(std::vector<float>* hidden) = 0;
};

}  // namespace kiln
