// FakeBackend: a deterministic stand-in Backend for engine tests and benchmarks (test-only; not
// part of kiln_engine). It stores one value per KV slot, Mix(token, position), written at
// slot_mapping, and computes every logits / hidden row from the values it reads back through the
// row's block table for positions 0..pos. So a wrong block table, slot mapping, position, stale
// block or skipped token changes the output, exactly like a real model would - just in
// microseconds.
//
// Logits of a row with history value h: logits[v] = uniform(h, v) in [0, 4); sampling follows the
// SamplingRow contract for greedy rows (argmax after bans / bitmask, lowest id on ties) and draws
// by inverse CDF of softmax(logits / temperature) with SamplingUniform otherwise (no top-k/p).
// Forward validates the batch's shape and returns InvalidArgument on any inconsistency, and
// fails reads of never-written slots. Counters expose what was computed.
//
// KV block transfers: a block record is the block's block_size slot values; with
// set_copy_latency_polls(n) a copy happens (and its ticket completes) only at the n-th KvCopyDone
// poll, so an engine that used a destination block early, or reused a source block before the
// copy, would read or store wrong values; set_fail_copies makes copies fail (KvCopyDone's error).
//
// Sampling happens in SampleAsync; with set_async(true) SampleReady() stays false until
// WaitSample, like a GPU whose sampler is still running, so the engine takes its pipelined path
// (deferred tokens resolved from the last SampleAsync's ids).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "backend/backend.h"

namespace kiln {

class FakeBackend final : public Backend {
 public:
  FakeBackend(int vocab_size, int hidden_size, int block_size, int64_t num_kv_blocks,
              std::vector<int32_t> eos_token_ids = {}, int max_position_embeddings = 4096);

  const ModelConfig& config() const override { return config_; }
  int block_size() const override { return block_size_; }
  int64_t num_kv_blocks() const override { return num_kv_blocks_; }
  Status Forward(const ForwardBatch& batch) override;
  Status SampleAsync(std::span<const SamplingRow> rows) override;
  bool SampleReady() override { return !async_ || !sample_pending_; }
  Status WaitSample(std::vector<SampleResult>* results) override;
  Status GetLogits(std::vector<float>* logits) override;
  Status GetHidden(std::vector<float>* hidden) override;

  int64_t kv_block_record_bytes() const override {
    return int64_t{block_size_} * static_cast<int64_t>(sizeof(uint64_t));
  }
  std::string kv_record_layout() const override { return "fake u64 slots"; }
  Status AllocateHostKvPool(int64_t num_records) override;
  uint8_t* host_kv_pool() override { return host_pool_.empty() ? nullptr : host_pool_.data(); }
  StatusOr<uint64_t> CopyKvBlocks(KvCopyDirection direction,
                                  std::span<const KvBlockCopy> copies) override;
  StatusOr<bool> KvCopyDone(uint64_t ticket, double* seconds) override;
  void set_copy_latency_polls(int n) { copy_latency_polls_ = n; }
  // Error injection: copies issued in `direction` while set complete with an Internal error from
  // KvCopyDone, having copied nothing (a store leaves the host records' old bytes, a load fills
  // its destination blocks with garbage that a block cached anyway would read back).
  void set_fail_copies(KvCopyDirection direction, bool fail) {
    (direction == KvCopyDirection::kDeviceToHost ? fail_stores_ : fail_loads_) = fail;
  }
  int64_t num_failed_copies() const { return num_failed_copies_; }
  int64_t num_blocks_copied() const { return num_blocks_copied_; }

  int64_t num_forward_calls() const { return num_forward_calls_; }
  int64_t num_tokens_computed() const { return num_tokens_computed_; }
  // When > 0, Forward fails on its n-th call from now (error injection).
  void FailForwardAfter(int n) { fail_after_ = n; }
  // Pipelined mode (see above).
  void set_async(bool async) { async_ = async; }
  // Called inside every Forward, after validation (tests observe what overlaps a forward pass).
  void set_forward_hook(std::function<void()> hook) { forward_hook_ = std::move(hook); }
  // Called at the start of every SampleAsync with its rows (tests inspect what the engine passes).
  void set_sample_hook(std::function<void(std::span<const SamplingRow>)> hook) {
    sample_hook_ = std::move(hook);
  }
  int64_t num_deferred_tokens() const { return num_deferred_tokens_; }

 private:
  void RowLogits(uint64_t h, float* out) const;

  ModelConfig config_;
  int block_size_;
  int64_t num_kv_blocks_;
  std::function<void(std::span<const SamplingRow>)> sample_hook_;
  std::vector<uint64_t> cache_;  // [num_kv_blocks * block_size]; 0 = never written
  std::vector<uint64_t> logits_hashes_;
  std::vector<uint64_t> hidden_hashes_;
  std::vector<float> scratch_;
  std::vector<SampleResult> samples_;  // the last SampleAsync's results, until WaitSample
  Status sample_status_;
  std::vector<int32_t> sampled_ids_;  // the last SampleAsync's ids (deferred tokens read them)
  std::vector<int32_t> token_ids_;
  bool async_ = false;
  bool sample_pending_ = false;
  std::function<void()> forward_hook_;
  int64_t num_deferred_tokens_ = 0;
  struct PendingCopy {
    KvCopyDirection direction;
    std::vector<KvBlockCopy> copies;
    int polls_left = 0;
    bool deferred = false;  // copied at completion (else at issue)
    bool fail = false;      // completes with an error, having copied nothing
  };
  void RunCopy(const PendingCopy& c);
  std::vector<uint8_t> host_pool_;
  int64_t num_host_records_ = 0;
  int copy_latency_polls_ = 0;
  bool fail_stores_ = false;
  bool fail_loads_ = false;
  int64_t num_failed_copies_ = 0;
  uint64_t next_ticket_ = 1;
  std::map<uint64_t, PendingCopy> copies_;
  int64_t num_blocks_copied_ = 0;
  int64_t num_forward_calls_ = 0;
  int64_t num_tokens_computed_ = 0;
  int fail_after_ = 0;
};

}  // namespace kiln
