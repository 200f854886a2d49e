#include "backend/cpu/cpu_backend.h"

#include <cblas.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <thread>
#include <vector>

#include "backend/cpu/cpu_sampler.h"
#include "backend/cpu/kv_transfer.h"
#include "backend/cpu/linear.h"
#include "backend/cpu/ops.h"
#include "common/check.h"

namespace kiln {
namespace {

// y[n, out] = x[n, in] · w[out, in]^T (+ bias[out]); each row independent of the others in the
// batch (see linear.h).
void Linear(const float* x, int n, int in, const std::vector<float>& w, int out, float* y,
            int num_threads, const std::vector<float>* bias = nullptr) {
  cpu::LinearRows(x, n, in, w.data(), out, y, num_threads);
  if (bias != nullptr && !bias->empty()) {
    for (int t = 0; t < n; ++t)
      for (int j = 0; j < out; ++j) y[static_cast<int64_t>(t) * out + j] += (*bias)[j];
  }
}

// Appends the float32 values of `t` to `out`.
void AppendFloat(const Tensor& t, std::vector<float>* out) {
  const size_t old = out->size();
  out->resize(old + static_cast<size_t>(t.numel()));
  t.ToFloat(0, t.numel(), out->data() + old);
}

std::vector<float> ToFloat(const Tensor& t) {
  std::vector<float> v;
  if (t.defined()) AppendFloat(t, &v);
  return v;
}

class CpuBackend final : public Backend {
 public:
  CpuBackend(std::shared_ptr<const LoadedModel> model, const CpuBackendOptions& options,
             int64_t num_kv_blocks, int num_threads)
      : model_(std::move(model)),
        config_(model_->config),
        block_size_(options.block_size),
        num_kv_blocks_(num_kv_blocks),
        num_threads_(num_threads) {
    const LlamaWeights& w = model_->weights;
    embed_ = ToFloat(w.embed_tokens);
    tied_ = w.lm_head.data == w.embed_tokens.data &&
            w.lm_head.dummy_seed == w.embed_tokens.dummy_seed &&
            w.lm_head.dummy_fill == w.embed_tokens.dummy_fill;
    if (!tied_) lm_head_ = ToFloat(w.lm_head);
    final_norm_ = ToFloat(w.norm);
    for (const LlamaWeights::Layer& l : w.layers) {
      Layer f;
      f.input_norm = ToFloat(l.input_layernorm);
      AppendFloat(l.q_proj, &f.qkv);
      AppendFloat(l.k_proj, &f.qkv);
      AppendFloat(l.v_proj, &f.qkv);
      if (config_.attention_bias) {
        AppendFloat(l.q_bias, &f.qkv_bias);
        AppendFloat(l.k_bias, &f.qkv_bias);
        AppendFloat(l.v_bias, &f.qkv_bias);
      }
      f.q_norm = ToFloat(l.q_norm);
      f.k_norm = ToFloat(l.k_norm);
      f.o = ToFloat(l.o_proj);
      f.post_norm = ToFloat(l.post_attention_layernorm);
      AppendFloat(l.gate_proj, &f.gate_up);
      AppendFloat(l.up_proj, &f.gate_up);
      f.down = ToFloat(l.down_proj);
      const size_t cache_floats =
          static_cast<size_t>(num_kv_blocks_) * block_size_ * config_.kv_size();
      f.k_cache.assign(cache_floats, 0.0f);
      f.v_cache.assign(cache_floats, 0.0f);
      layers_.push_back(std::move(f));
    }
    rope_ = cpu::ComputeRopeTable(config_);
    openblas_set_num_threads(num_threads_);
    std::vector<float*> k_caches, v_caches;
    for (Layer& l : layers_) {
      k_caches.push_back(l.k_cache.data());
      v_caches.push_back(l.v_cache.data());
    }
    kv_transfer_ = std::make_unique<cpu::KvTransfer>(std::move(k_caches), std::move(v_caches),
                                                     block_size_, config_.kv_size(), num_kv_blocks_);
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
  std::string kv_record_layout() const override {
    return "cpu-f32 layers=" + std::to_string(config_.num_hidden_layers) +
           " kv_heads=" + std::to_string(config_.num_key_value_heads) +
           " head_dim=" + std::to_string(config_.head_dim) +
           " block=" + std::to_string(block_size_) + " [layer][K,V][block][head][dim]";
  }
  Status AllocateHostKvPool(int64_t num_records) override {
    return kv_transfer_->AllocateHostPool(num_records);
  }
  uint8_t* host_kv_pool() override { return kv_transfer_->host_pool(); }
  StatusOr<uint64_t> CopyKvBlocks(KvCopyDirection direction,
                                  std::span<const KvBlockCopy> copies) override {
    return kv_transfer_->Copy(direction, copies);
  }
  bool KvCopyDone(uint64_t ticket, double* seconds) override {
    return kv_transfer_->Done(ticket, seconds);
  }

 private:
  struct Layer {
    std::vector<float> input_norm;        // [h]
    std::vector<float> qkv;               // [q + 2 kv, h]
    std::vector<float> qkv_bias;          // [q + 2 kv] or empty
    std::vector<float> q_norm, k_norm;    // [D] or empty
    std::vector<float> o;                 // [h, q]
    std::vector<float> post_norm;         // [h]
    std::vector<float> gate_up;           // [2 inter, h]
    std::vector<float> down;              // [h, inter]
    std::vector<float> k_cache, v_cache;  // [num_slots, Hkv, D]
  };

  Status ValidateBatch(const ForwardBatch& b) const;
  void Attention(const ForwardBatch& b, Layer& layer, int n);

  std::shared_ptr<const LoadedModel> model_;
  const ModelConfig& config_;
  int block_size_;
  int64_t num_kv_blocks_;
  int num_threads_;
  std::vector<float> embed_, lm_head_, final_norm_;
  bool tied_ = false;
  std::vector<Layer> layers_;
  cpu::RopeTable rope_;
  // Activations, reused across steps.
  std::vector<float> residual_, normed_, qkv_out_, q_, k_, v_, attn_, proj_, gate_up_out_, act_;
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

void CpuBackend::Attention(const ForwardBatch& b, Layer& layer, int n) {
  const int H = config_.num_attention_heads, Hkv = config_.num_key_value_heads,
            D = config_.head_dim;
  const int q_size = config_.q_size(), kv_size = config_.kv_size(), row = q_size + 2 * kv_size;
  const float eps = static_cast<float>(config_.rms_norm_eps);
  Linear(normed_.data(), n, config_.hidden_size, layer.qkv, row, qkv_out_.data(), num_threads_,
         &layer.qkv_bias);
  for (int t = 0; t < n; ++t) {
    const float* src = qkv_out_.data() + static_cast<int64_t>(t) * row;
    std::copy_n(src, q_size, q_.data() + static_cast<int64_t>(t) * q_size);
    std::copy_n(src + q_size, kv_size, k_.data() + static_cast<int64_t>(t) * kv_size);
    std::copy_n(src + q_size + kv_size, kv_size, v_.data() + static_cast<int64_t>(t) * kv_size);
  }
  if (config_.qk_norm) {
    cpu::HeadRmsNorm(q_.data(), layer.q_norm.data(), n, H, D, eps);
    cpu::HeadRmsNorm(k_.data(), layer.k_norm.data(), n, Hkv, D, eps);
  }
  cpu::ApplyRope(q_.data(), k_.data(), b.positions.data(), n, H, Hkv, D, rope_.inv_freq.data(),
                 rope_.attention_scaling, config_.rope_interleaved);
  cpu::WriteKvCache(k_.data(), v_.data(), b.slot_mapping.data(), n, Hkv, D, layer.k_cache.data(),
                    layer.v_cache.data());
  cpu::PagedAttention(q_.data(), layer.k_cache.data(), layer.v_cache.data(), b, H, Hkv, D,
                      block_size_, 1.0f / std::sqrt(static_cast<float>(D)), attn_.data(),
                      num_threads_);
  Linear(attn_.data(), n, q_size, layer.o, config_.hidden_size, proj_.data(), num_threads_);
}

Status CpuBackend::Forward(const ForwardBatch& b) {
  // A failed Forward leaves no rows behind for Sample / GetLogits / GetHidden.
  vocab_rows_ = 0;
  logits_.clear();
  hidden_.clear();
  KILN_RETURN_IF_ERROR(ResolveDeferredTokens(b, sampled_ids_, &token_ids_));
  KILN_RETURN_IF_ERROR(ValidateBatch(b));
  const int n = b.num_tokens(), h = config_.hidden_size, inter = config_.intermediate_size;
  const float eps = static_cast<float>(config_.rms_norm_eps);
  const size_t nn = static_cast<size_t>(n);
  residual_.resize(nn * h);
  normed_.resize(nn * h);
  qkv_out_.resize(nn * (config_.q_size() + 2 * config_.kv_size()));
  q_.resize(nn * config_.q_size());
  k_.resize(nn * config_.kv_size());
  v_.resize(nn * config_.kv_size());
  attn_.resize(nn * config_.q_size());
  proj_.resize(nn * h);
  gate_up_out_.resize(nn * 2 * inter);
  act_.resize(nn * inter);

  cpu::EmbeddingGather(token_ids_.data(), n, embed_.data(), h, residual_.data());
  for (size_t l = 0; l < layers_.size(); ++l) {
    Layer& layer = layers_[l];
    if (l == 0) {
      cpu::RmsNorm(residual_.data(), layer.input_norm.data(), n, h, eps, normed_.data());
    } else {  // proj_ holds the previous layer's MLP output
      cpu::AddRmsNorm(residual_.data(), proj_.data(), layer.input_norm.data(), n, h, eps,
                      normed_.data());
    }
    Attention(b, layer, n);
    cpu::AddRmsNorm(residual_.data(), proj_.data(), layer.post_norm.data(), n, h, eps,
                    normed_.data());
    Linear(normed_.data(), n, h, layer.gate_up, 2 * inter, gate_up_out_.data(), num_threads_);
    cpu::SiluMul(gate_up_out_.data(), n, inter, act_.data());
    Linear(act_.data(), n, inter, layer.down, h, proj_.data(), num_threads_);
  }
  cpu::AddRmsNorm(residual_.data(), proj_.data(), final_norm_.data(), n, h, eps, normed_.data());

  hidden_.resize(b.hidden_indices.size() * h);
  for (size_t i = 0; i < b.hidden_indices.size(); ++i)
    std::copy_n(normed_.data() + static_cast<int64_t>(b.hidden_indices[i]) * h, h,
                hidden_.data() + i * h);
  const int rows = static_cast<int>(b.logits_indices.size());
  vocab_rows_ = rows;
  logits_.resize(static_cast<size_t>(rows) * config_.vocab_size);
  if (rows > 0) {
    std::vector<float> selected(static_cast<size_t>(rows) * h);
    for (int i = 0; i < rows; ++i)
      std::copy_n(normed_.data() + static_cast<int64_t>(b.logits_indices[i]) * h, h,
                  selected.data() + static_cast<int64_t>(i) * h);
    Linear(selected.data(), rows, h, tied_ ? embed_ : lm_head_, config_.vocab_size, logits_.data(),
           num_threads_);
  }
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
  return Status::Ok();
}

StatusOr<std::unique_ptr<Backend>> CreateCpuBackend(std::shared_ptr<const LoadedModel> model,
                                                    const CpuBackendOptions& options) {
  KILN_RETURN_IF_ERROR(options.Validate());
  if (model == nullptr) return Status::InvalidArgument("CreateCpuBackend: no model");
  KILN_RETURN_IF_ERROR(model->config.Validate());
  KILN_RETURN_IF_ERROR(ValidateWeights(model->config, model->weights));
  const int64_t bytes_per_block = int64_t{2} * sizeof(float) * options.block_size *
                                  model->config.kv_size() * model->config.num_hidden_layers;
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
  const LlamaWeights& w = model->weights;
  double weight_elements = static_cast<double>(w.embed_tokens.numel()) + w.norm.numel();
  if (!model->config.tie_word_embeddings) weight_elements += static_cast<double>(w.lm_head.numel());
  for (const LlamaWeights::Layer& l : w.layers)
    for (const Tensor* t : {&l.input_layernorm, &l.q_proj, &l.k_proj, &l.v_proj, &l.q_bias,
                            &l.k_bias, &l.v_bias, &l.q_norm, &l.k_norm, &l.o_proj,
                            &l.post_attention_layernorm, &l.gate_proj, &l.up_proj, &l.down_proj})
      weight_elements += static_cast<double>(t->numel());
  const double needed_bytes =
      4.0 * weight_elements + static_cast<double>(num_blocks) * bytes_per_block;
  const double physical_bytes =
      static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
  if (physical_bytes > 0 && needed_bytes > physical_bytes)
    return Status::ResourceExhausted(
        "CPU backend needs " + std::to_string(static_cast<int64_t>(needed_bytes / 1e6)) +
        " MB (float32 weights + KV cache) but the machine has " +
        std::to_string(static_cast<int64_t>(physical_bytes / 1e6)) + " MB");
  int threads = options.num_threads;
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  return std::unique_ptr<Backend>(new CpuBackend(std::move(model), options, num_blocks, threads));
}

}  // namespace kiln
