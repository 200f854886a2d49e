// Accuracy of a quantized model against its unquantized reference, from full-vocabulary logits
// over the same token sequences (teacher forced): per-token KL divergence KL(P_ref || P), top-1
// agreement (argmax equal; the lowest id on ties) and the perplexity of each model on the
// sequences' next tokens. The math runs in double over log-softmax rows.
//
// TeacherForcedLogits / CompareOnSequences drive any two Backends (backend/backend.h) through
// Forward + GetLogits: each sequence is prefilled in chunks of at most `chunk_tokens` tokens into
// blocks 0, 1, 2, ... (the backend needs ceil(len / block_size) KV blocks) with logits for every
// position.
//
// Thread-safety: AccuracyStats is a value; the runners use the backends from the calling thread.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "kiln/status.h"

namespace kiln::quant {

// Logit lead of the reference's top-1 over its runner-up that makes a position "confident".
inline constexpr double kConfidentMargin = 0.5;

struct AccuracyStats {
  int64_t tokens = 0;   // positions compared
  double kl_sum = 0.0;  // Σ KL(P_ref || P) in nats
  double kl_max = 0.0;
  int64_t top1_same = 0;  // positions whose argmax agrees
  // Positions where the reference's top-1 logit leads its runner-up by >= kConfidentMargin, and
  // how many of those keep their argmax: a flip there changes what greedy decoding writes even
  // though the reference was sure; flips at near-ties are noise.
  int64_t confident_tokens = 0;
  int64_t confident_same = 0;
  int64_t nll_tokens = 0;    // positions followed by a known next token
  double nll_sum = 0.0;      // Σ -log P(next)
  double ref_nll_sum = 0.0;  // Σ -log P_ref(next)

  double MeanKl() const { return tokens ? kl_sum / tokens : 0.0; }
  double Top1Agreement() const { return tokens ? static_cast<double>(top1_same) / tokens : 0.0; }
  double ConfidentTop1Agreement() const {
    return confident_tokens ? static_cast<double>(confident_same) / confident_tokens : 1.0;
  }
  double Perplexity() const;           // exp(nll_sum / nll_tokens)
  double ReferencePerplexity() const;  // exp(ref_nll_sum / nll_tokens)
  void Merge(const AccuracyStats& other);
};

// Adds `rows` positions: `reference` and `test` are row-major [rows, vocab]; next_ids[r] is the
// token that follows position r (negative or past the span's end: none).
void AccumulateAccuracy(const float* reference, const float* test, int64_t rows, int vocab,
                        std::span<const int32_t> next_ids, AccuracyStats* stats);

// Logits [ids.size(), vocab] of `backend` over `ids` from position 0 (overwrites the KV cache's
// first blocks). Errors: the sequence needs more KV blocks than the backend has, Forward errors.
StatusOr<std::vector<float>> TeacherForcedLogits(Backend& backend, std::span<const int32_t> ids,
                                                 int chunk_tokens = 512);

// Runs every sequence through both backends and accumulates `test` against `reference`.
StatusOr<AccuracyStats> CompareOnSequences(Backend& reference, Backend& test,
                                           const std::vector<std::vector<int32_t>>& sequences);

}  // namespace kiln::quant
