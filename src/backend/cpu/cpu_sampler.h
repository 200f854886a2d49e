// The reference implementation of Backend::Sample for one logits row: exactly the SamplingRow
// semantics documented in backend/backend.h, in float32 (sums in double), with these precise
// readings of that contract (shared with the CUDA sampler in kernels/sampling.cuh):
//  - repetition_penalty applies once per distinct id of prompt ∪ output;
//  - after temperature and softmax over the processed logits, probabilities are ordered descending
//    (ties by lower id) — conceptually; nothing is sorted (see DrawFromProbs); top_k keeps the first k; min_p keeps p >= min_p * p_max (at least one);
//    top_p keeps the shortest prefix whose inclusive mass, of the full softmax, reaches top_p (at
//    least one); the intersection of these prefixes survives;
//  - the draw: target = u * (sum of survivors' probs), the first survivor whose inclusive prefix
//    sum exceeds target (the last survivor when rounding leaves none);
//  - every mass (top_p's prefix, the survivors' sum, the draw's prefix) is a sum of
//    round(p * 2^31) as integers: exact, so the result does not depend on summation order.
// Errors (kInvalidArgument): every token banned / masked, or a requested / penalty id outside the
// vocabulary.
//
// Thread-safety: a pure function.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "kiln/status.h"

namespace kiln::cpu {

// logits: [vocab_size] raw float32 logits of one row.
Status SampleLogitsRow(std::span<const float> logits, const SamplingRow& row, SampleResult* result);

// Step 3's random branch over probabilities probs (>= 0, any order): the top_k / min_p / top_p
// cuts and the inverse-CDF draw with `uniform`, by radix selects over the probabilities' bit
// patterns — O(vocab), no sort; the CPU twin of the GPU's SelectKernel. Returns the token id.
int32_t DrawFromProbs(const std::vector<float>& probs, int top_k, float min_p, float top_p,
                      float uniform);

}  // namespace kiln::cpu
