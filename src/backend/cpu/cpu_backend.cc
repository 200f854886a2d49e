#include "backend/cpu/cpu_backend.h"

#include <cblas.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <thread>
#include <vector>

#include "backend/cpu/cpu_ops.h"
#include "backend/cpu/cpu_sampler.h"
#include "backend/cpu/kv_transfer.h"
#include "common/check.h"
#include "model/quantized_weights.h"
#include "quant/fp8_quant.h"

namespace kiln {
namespace {

// --kv-cache-dtype → the cache's element type ("auto" is the compute dtype, float32).
cpu::KvElement KvElementFor(const std::string& kv_cache_dtype) {
  if (kv_cache_dtype == "fp8") return cpu::KvElement::kFp8E4M3;
  if (kv_cache_dtype == "bfloat16") return cpu::KvElement::kBf16;
  return cpu::KvElement::kF32;
}

class CpuBackend final : public Backend {
 public:
  CpuBackend(std::shared_ptr<const LoadedModel> loaded, std::shared_ptr<const LlamaModel> model,
             const CpuBackendOptions& options, int64_t num_kv_blocks, int num_threads)
      : loaded_(std::move(loaded)),
        model_(std::move(model)),
        config_(loaded_->config),
        block_size_(options.block_size),
        num_kv_blocks_(num_kv_blocks),
        num_threads_(num_threads),
        weights_(cpu::CpuWeights::FromModel(*model_)),
        ops_(*model_, weights_, cache_, block_size_, num_threads_) {
    cache_.element = KvElementFor(options.kv_cache_dtype);
    const size_t cache_bytes = static_cast<size_t>(num_kv_blocks_) * block_size_ *
                               model_->shape.kv_size() * cpu::KvElementBytes(cache_.element);
    cache_.k.assign(static_cast<size_t>(model_->shape.num_layers),
                    std::vector<uint8_t>(cache_bytes, 0));
    cache_.v = cache_.k;
    openblas_set_num_threads(num_threads_);
    std::vector<uint8_t*> k_caches, v_caches;
    for (size_t l = 0; l < cache_.k.size(); ++l) {
      k_caches.push_back(cache_.k[l].data());
      v_caches.push_back(cache_.v[l].data());
    }
    kv_transfer_ = std::make_unique<cpu::KvTransfer>(
        std::move(k_caches), std::move(v_caches), block_size_,
        int64_t{model_->shape.kv_size()} * cpu::KvElementBytes(cache_.element), num_kv_blocks_);
    // The tiers key records by this string: a record written under another element type or
    // scale never loads.
    kv_layout_ = std::string("cpu-") + cpu::KvElementName(cache_.element);
    if (cache_.element == cpu::KvElement::kFp8E4M3) {
      char scales[64];
      std::snprintf(scales, sizeof(scales), "(k_scale=%a v_scale=%a)", cache_.scales.k_scale,
                    cache_.scales.v_scale);
      kv_layout_ += scales;
    }
    kv_layout_ += " layers=" + std::to_string(model_->shape.num_layers) +
                  " kv_size=" + std::to_string(model_->shape.kv_size()) +
                  " block=" + std::to_string(block_size_) + " [layer][K,V][block][head][dim]";
  }

  const ModelConfig& config() const override { return config_; }
  int block_size() const override { return block_size_; }
  int64_t num_kv_blocks() const override { return num_kv_blocks_; }

  Status Forward(const ForwardBatch& batch) override;
  // Synchronous: SampleAsync samples, WaitSample hands the results over.
  Status SampleAsync(std::span<const SamplingRow> rows) override;
  bool SampleReady() override { return true; }
  Status WaitSample(std::vector<SampleResult>* results) override;
  Status GetLogits(std::vector<float>* logits) override {
    *logits = logits_;
    return Status::Ok();
  }
  Status GetHidden(std::vector<float>* hidden) override {
    *hidden = hidden_;
    return Status::Ok();
  }
  // KV block transfers: cpu/kv_transfer.h.
  int64_t kv_block_record_bytes() const override { return kv_transfer_->record_bytes(); }
  std::string kv_record_layout() const override { return kv_layout_; }
  Status AllocateHostKvPool(int64_t num_records) override {
    return kv_transfer_->AllocateHostPool(num_records);
  }
  uint8_t* host_kv_pool() override { return kv_transfer_->host_pool(); }
  StatusOr<uint64_t> CopyKvBlocks(KvCopyDirection direction,
                                  std::span<const KvBlockCopy> copies) override {
    return kv_transfer_->Copy(direction, copies);
  }
  StatusOr<bool> KvCopyDone(uint64_t ticket, double* seconds) override {
    return kv_transfer_->Done(ticket, seconds);
  }

 private:
  Status ValidateBatch(const ForwardBatch& b) const;

  std::shared_ptr<const LoadedModel> loaded_;
  std::shared_ptr<const LlamaModel> model_;
  const ModelConfig& config_;
  int block_size_;
  int64_t num_kv_blocks_;
  int num_threads_;
  cpu::CpuWeights weights_;
  cpu::CpuKvCache cache_;
  cpu::CpuOps ops_;
  // Results of the last Forward.
  int vocab_rows_ = 0;
  std::vector<float> logits_;  // [logits_indices.size(), vocab]
  std::vector<float> hidden_;  // [hidden_indices.size(), h]
  // The last SampleAsync: its results (until WaitSample) and its ids (for deferred tokens).
  std::vector<SampleResult> samples_;
  Status sample_status_;
  std::vector<int32_t> sampled_ids_;
  std::vector<int32_t> token_ids_;  // the batch's ids with deferred tokens filled
  std::unique_ptr<cpu::KvTransfer> kv_transfer_;
  std::string kv_layout_;
};

Status CpuBackend::ValidateBatch(const ForwardBatch& b) const {
  auto bad = [](const std::string& m) { return Status::InvalidArgument("ForwardBatch: " + m); };
  const int n = b.num_tokens(), num_seqs = b.num_seqs();
  if (n == 0) return bad("no tokens");
  if (b.positions.size() != static_cast<size_t>(n) ||
      b.slot_mapping.size() != static_cast<size_t>(n))
    return bad("token_ids, positions and slot_mapping differ in length");
  if (b.cu_seqlens_q.size() != static_cast<size_t>(num_seqs) + 1 || b.cu_seqlens_q[0] != 0 ||
      b.cu_seqlens_q.back() != n)
    return bad("cu_seqlens_q must have num_seqs + 1 entries from 0 to num_tokens");
  if (b.max_blocks_per_seq <= 0 ||
      b.block_tables.size() != static_cast<size_t>(num_seqs) * b.max_blocks_per_seq)
    return bad("block_tables must be [num_seqs, max_blocks_per_seq]");
  for (int32_t id : token_ids_)
    if (id < 0 || id >= config_.vocab_size)
      return bad("token id " + std::to_string(id) + " outside vocabulary");
  for (int s = 0; s < num_seqs; ++s) {
    const int begin = b.cu_seqlens_q[s], end = b.cu_seqlens_q[s + 1];
    const int q_len = end - begin, seq_len = b.seq_lens[s];
    if (q_len <= 0) return bad("sequence " + std::to_string(s) + " has no new tokens");
    if (seq_len < q_len ||
        static_cast<int64_t>(seq_len) > static_cast<int64_t>(b.max_blocks_per_seq) * block_size_)
      return bad("sequence " + std::to_string(s) + " has an inconsistent seq_len");
    const int32_t* table = b.block_tables.data() + static_cast<int64_t>(s) * b.max_blocks_per_seq;
    for (int blk = 0; blk < (seq_len + block_size_ - 1) / block_size_; ++blk)
      if (table[blk] < 0 || table[blk] >= num_kv_blocks_)
        return bad("block id " + std::to_string(table[blk]) + " outside the KV cache");
    for (int t = begin; t < end; ++t) {
      const int pos = seq_len - q_len + (t - begin);
      if (b.positions[t] != pos)
        return bad("position of token row " + std::to_string(t) + " is not " + std::to_string(pos));
      const int64_t slot =
          static_cast<int64_t>(table[pos / block_size_]) * block_size_ + pos % block_size_;
      if (b.slot_mapping[t] != slot)
        return bad("slot_mapping of token row " + std::to_string(t) +
                   " disagrees with the block table");
    }
  }
  for (const auto* indices : {&b.logits_indices, &b.hidden_indices})
    for (int32_t r : *indices)
      if (r < 0 || r >= n)
        return bad("logits/hidden index " + std::to_string(r) + " outside the batch");
  return Status::Ok();
}

Status CpuBackend::Forward(const ForwardBatch& b) {
  // A failed Forward leaves no rows behind for Sample / GetLogits / GetHidden.
  vocab_rows_ = 0;
  logits_.clear();
  hidden_.clear();
  KILN_RETURN_IF_ERROR(ResolveDeferredTokens(b, sampled_ids_, &token_ids_));
  KILN_RETURN_IF_ERROR(ValidateBatch(b));
  ops_.BeginStep(b, token_ids_, &logits_, &hidden_);
  KILN_RETURN_IF_ERROR(LlamaForward(*model_, ops_));
  vocab_rows_ = static_cast<int>(b.logits_indices.size());
  return Status::Ok();
}

Status CpuBackend::SampleAsync(std::span<const SamplingRow> rows) {
  sampled_ids_.clear();
  samples_.clear();
  if (rows.size() != static_cast<size_t>(vocab_rows_)) {
    sample_status_ = Status::InvalidArgument("Sample: " + std::to_string(rows.size()) +
                                             " rows for " + std::to_string(vocab_rows_) +
                                             " logits rows");
    return sample_status_;
  }
  samples_.resize(rows.size());
  sampled_ids_.assign(rows.size(), 0);
  const size_t vocab = static_cast<size_t>(config_.vocab_size);
  sample_status_ = Status::Ok();
  for (size_t i = 0; i < rows.size() && sample_status_.ok(); ++i) {
    sample_status_ = cpu::SampleLogitsRow(std::span<const float>(logits_.data() + i * vocab, vocab),
                                          rows[i], &samples_[i]);
    sampled_ids_[i] = samples_[i].token_id;
  }
  return Status::Ok();
}

Status CpuBackend::WaitSample(std::vector<SampleResult>* results) {
  KILN_RETURN_IF_ERROR(sample_status_);
  results->swap(samples_);
  samples_.clear();
  return Status::Ok();
}

}  // namespace

Status CpuBackendOptions::Validate() const {
  if (block_size <= 0 || block_size > 4096)
    return Status::InvalidArgument("block_size out of range");
  if (num_kv_blocks < 0) return Status::InvalidArgument("num_kv_blocks must be >= 0");
  if (num_kv_blocks == 0 && kv_cache_memory_bytes <= 0)
    return Status::InvalidArgument("kv_cache_memory_bytes must be > 0");
  if (num_threads < 0 || num_threads > 1024)
    return Status::InvalidArgument("num_threads out of range");
  if (quantization != "auto" && quantization != "none" && quantization != "fp8")
    return Status::InvalidArgument("quantization must be auto, none or fp8, got '" + quantization +
                                   "'");
  if (quantization_scale != "per-channel" && quantization_scale != "per-tensor")
    return Status::InvalidArgument("quantization_scale must be per-channel or per-tensor, got '" +
                                   quantization_scale + "'");
  if (kv_cache_dtype != "auto" && kv_cache_dtype != "float32" && kv_cache_dtype != "bfloat16" &&
      kv_cache_dtype != "fp8")
    return Status::InvalidArgument("kv_cache_dtype must be auto, float32, bfloat16 or fp8, got '" +
                                   kv_cache_dtype + "'");
  return Status::Ok();
}

StatusOr<std::unique_ptr<Backend>> CreateCpuBackend(std::shared_ptr<const LoadedModel> model,
                                                    const CpuBackendOptions& options) {
  KILN_RETURN_IF_ERROR(options.Validate());
  if (model == nullptr) return Status::InvalidArgument("CreateCpuBackend: no model");
  KILN_RETURN_IF_ERROR(model->config.Validate());
  // --quantization: quantize a dense model's projections / dequantize a quantized one.
  const bool dense = model->weights.quantization.dense();
  if ((options.quantization == "fp8" && dense) || (options.quantization == "none" && !dense)) {
    auto converted = std::make_shared<LoadedModel>(*model);
    if (dense) {
      KILN_ASSIGN_OR_RETURN(
          converted->weights,
          quant::QuantizeLlamaWeightsFp8(
              model->weights, quant::Fp8Quantization(options.quantization_scale == "per-tensor"
                                                         ? ScaleGranularity::kPerTensor
                                                         : ScaleGranularity::kPerChannel)));
    } else {
      KILN_RETURN_IF_ERROR(DequantizeProjections(&converted->weights));
    }
    model = std::move(converted);
  }
  KILN_ASSIGN_OR_RETURN(std::shared_ptr<const LlamaModel> llama, LlamaModel::Build(model));
  const int64_t bytes_per_block = int64_t{2} * cpu::KvElementBytes(KvElementFor(options.kv_cache_dtype)) *
                                  options.block_size * llama->shape.kv_size() *
                                  llama->shape.num_layers;
  int64_t num_blocks = options.num_kv_blocks;
  if (num_blocks == 0) num_blocks = options.kv_cache_memory_bytes / bytes_per_block;
  if (num_blocks <= 0)
    return Status::ResourceExhausted(
        "KV cache budget of " + std::to_string(options.kv_cache_memory_bytes) +
        " bytes holds no block of " + std::to_string(bytes_per_block) + " bytes");
  if (num_blocks > (int64_t{1} << 40) / bytes_per_block)
    return Status::ResourceExhausted("KV cache of " + std::to_string(num_blocks) +
                                     " blocks is too large");
  // Float32 weights + KV cache must fit in physical memory (a 7B dummy model would need ~30 GB).
  const double needed_bytes =
      cpu::CpuWeights::Float32Bytes(*llama) + static_cast<double>(num_blocks) * bytes_per_block;
  const double physical_bytes =
      static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
  if (physical_bytes > 0 && needed_bytes > physical_bytes)
    return Status::ResourceExhausted(
        "CPU backend needs " + std::to_string(static_cast<int64_t>(needed_bytes / 1e6)) +
        " MB (float32 weights + KV cache) but the machine has " +
        std::to_string(static_cast<int64_t>(physical_bytes / 1e6)) + " MB");
  int threads = options.num_threads;
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  return std::unique_ptr<Backend>(
      new CpuBackend(std::move(model), std::move(llama), options, num_blocks, threads));
}

}  // namespace kiln
