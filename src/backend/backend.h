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
//
// KV block transfers (the tiered prefix cache, src/kv/): a backend that supports them owns a host
// KV pool of block records (AllocateHostKvPool; pinned memory on CUDA) and copies lists of blocks
// between its device KV cache and that pool (CopyKvBlocks) on a dedicated copy stream, ordered
// after every Forward issued before the call (an event, never a device-wide sync), and reports
// completion or failure per ticket (KvCopyDone, non-blocking). A block record is one block's K
// and V for all layers, contiguous, and moves as one unit:
// [layer][K, V][block_size][num_kv_heads][head_dim] in the KV cache's element type. The caller
// guarantees that no Forward issued while a copy is in flight writes its source blocks or reads /
// writes its destination blocks (the KV manager pins them), and that a host record is not touched
// while a copy uses it.
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

// One block copy of a CopyKvBlocks call.
struct KvBlockCopy {
  int32_t device_block = 0;  // in [0, num_kv_blocks())
  int64_t host_record = 0;   // in [0, the host pool's num_records)
};

enum class KvCopyDirection { kDeviceToHost, kHostToDevice };

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

// InvalidArgument when a copy names a device block outside [0, num_blocks) or a host record
// outside [0, num_records): the check every CopyKvBlocks makes before it copies anything.
inline Status ValidateKvBlockCopies(std::span<const KvBlockCopy> copies, int64_t num_blocks,
                                    int64_t num_records) {
  for (const KvBlockCopy& c : copies) {
    if (c.device_block < 0 || c.device_block >= num_blocks || c.host_record < 0 ||
        c.host_record >= num_records) {
      return Status::InvalidArgument("KV copy of block " + std::to_string(c.device_block) +
                                     " / host record " + std::to_string(c.host_record) +
                                     " out of range");
    }
  }
  return Status::Ok();
}

class Backend {
 public:
  virtual ~Backend() = default;

  virtual const ModelConfig& config() const = 0;
  virtual int block_size() const = 0;
  virtual int64_t num_kv_blocks() const = 0;

  // Most logits rows one Forward may ask for (prompt logprobs ask for one per prompt token; the
  // scheduler keeps every step within max(this, max_num_seqs)).
  virtual int max_logits_rows() const { return 256; }
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

  // ---- KV block transfers (see the top of this file) ----
  // Bytes of one block record; 0 when this backend has no block transfers.
  virtual int64_t kv_block_record_bytes() const { return 0; }
  // Describes the record layout (element type, layers, heads, head_dim, block size): part of the
  // prefix cache's namespace, so records of another layout are never loaded.
  virtual std::string kv_record_layout() const { return ""; }
  // Allocates the host pool of num_records block records (once; pinned memory on CUDA).
  virtual Status AllocateHostKvPool(int64_t num_records) {
    (void)num_records;
    return Status::FailedPrecondition("this backend has no KV block transfers");
  }
  // The host pool: record r at host_kv_pool() + r * kv_block_record_bytes(); null before
  // AllocateHostKvPool.
  virtual uint8_t* host_kv_pool() { return nullptr; }
  // Enqueues the copies (one direction) and returns a ticket (> 0) for KvCopyDone. Errors:
  // InvalidArgument for a block or record out of range, FailedPrecondition without a host pool,
  // or the device's error; an error means that no copy of the call is still running (a backend
  // that failed after issuing part of them waits for that part before it returns).
  virtual StatusOr<uint64_t> CopyKvBlocks(KvCopyDirection direction,
                                          std::span<const KvBlockCopy> copies) {
    (void)direction;
    (void)copies;
    return Status::FailedPrecondition("this backend has no KV block transfers");
  }
  // True when the copies of `ticket` have finished (then *seconds = their duration on the copy
  // engine, and the ticket is retired); false while they run; an error when they failed (the
  // ticket is retired too, and the destination's bytes are undefined: the caller must not use
  // them). Never blocks.
  virtual StatusOr<bool> KvCopyDone(uint64_t ticket, double* seconds) {
    (void)ticket;
    *seconds = 0.0;
    return true;
  }
};

}  // namespace kiln
