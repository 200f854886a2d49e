// GPU sampling: one token per logits row with the exact SamplingRow semantics of
// backend/backend.h (raw log-softmax logprobs; bitmask / banned ids → -inf; repetition, frequency
// and presence penalties; greedy argmax with lowest id on ties; or temperature softmax, top-k /
// top-p / min-p over the descending-probability order (ties by lower id), renormalization and an
// inverse-CDF draw with a host-computed uniform u = SamplingUniform(seed, step)).
//
// Framework-free: POD parameters, raw device pointers, stream last, returns cudaError_t. The host
// side (the CUDA backend) flattens each SamplingRow into a SampleRowParams plus ranges of shared
// index arrays. Includable from host C++ (no device code here).
//
// Work: one thread block per row, chunk_rows rows at a time to bound the workspace (one float
// probability row per row). Random rows are never sorted: top-k / min-p / top-p cuts and the draw
// are radix selects over the probabilities' bit patterns (sampling.cuh), O(vocab) per row.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace kiln::kernels {

struct SampleRowParams {
  float temperature = 0.0f;  // <= 0 → greedy
  int top_k = 0;             // <= 0 → off
  float top_p = 1.0f;
  float min_p = 0.0f;
  float uniform = 0.0f;  // SamplingUniform(seed, step), computed on the host
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  // [penalty_begin, penalty_end) into penalty_token_ids / penalty_output_counts: the DISTINCT ids
  // of prompt ∪ output with their count in the output (0 for prompt-only ids). Empty when every
  // penalty is at its neutral value.
  int penalty_begin = 0, penalty_end = 0;
  int ban_begin = 0, ban_end = 0;  // into banned_token_ids
  int64_t bitmask_offset = -1;     // word offset into bitmasks (ceil(vocab/32) words); -1 → none
  int num_top_logprobs = -1;       // -1 → no logprobs; 0 → chosen only; N → top N too
  int requested_begin = 0, requested_end = 0;  // into requested_token_ids / requested_logprobs
};

struct SampleInputs {
  const float* logits = nullptr;  // [num_rows, vocab_size] float32
  int num_rows = 0;
  int vocab_size = 0;
  const SampleRowParams* rows = nullptr;       // [num_rows] (device)
  const int32_t* penalty_token_ids = nullptr;  // device
  const int32_t* penalty_output_counts = nullptr;
  const int32_t* banned_token_ids = nullptr;
  const uint32_t* bitmasks = nullptr;
  const int32_t* requested_token_ids = nullptr;
  int max_top_logprobs = 0;  // stride of top_* outputs; >= every row's num_top_logprobs
  bool any_random = false;   // some row has temperature > 0 (enables the select pass)
  bool any_logprobs = false; // some row has num_top_logprobs >= 0
};

struct SampleOutputs {
  int32_t* token_ids = nullptr;     // [num_rows]
  float* logprobs = nullptr;        // [num_rows] raw log-softmax of the chosen id
  int32_t* top_ids = nullptr;       // [num_rows, max_top_logprobs]
  float* top_logprobs = nullptr;    // [num_rows, max_top_logprobs]
  float* requested_logprobs = nullptr;  // aligned with requested_token_ids
};

// Device scratch for up to chunk_rows rows of vocab_size; allocate SampleWorkspaceBytes().
size_t SampleWorkspaceBytes(int chunk_rows, int vocab_size);

// Samples every row. workspace: SampleWorkspaceBytes(chunk_rows, vocab_size) bytes; num_rows may
// exceed chunk_rows (processed in chunks).
cudaError_t LaunchSample(const SampleInputs& in, const SampleOutputs& out, void* workspace,
                         int chunk_rows, cudaStream_t stream);

}  // namespace kiln::kernels
