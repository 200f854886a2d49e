#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/kv_transfer.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <utility>
#include <vector>

#include "backend/cpu/ops.h"
#include "backend/cuda/cuda_util.h"
#include "backend/cuda/deferred_tokens.h"
#include "backend/cuda/device_fill.h"
#include "backend/cuda/device_timeline.h"
#include "backend/cuda/gemm.h"
#include "backend/cuda/gpu_sampler.h"
#include "common/check.h"
#include "common/logging.h"
#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/embedding.h"
#include "kernels/rms_norm.h"
#include "kernels/rope.h"

namespace kiln {
namespace {

using cuda::DeviceBuffer;
using cuda::ElemType;
using cuda::PinnedBuffer;

// Decode batch sizes with a captured CUDA graph; a decode step of n sequences runs the graph of
// the smallest bucket >= n, padded. 1 – 3 each have one: those products stream through the
// split-row GEMV (Gemm::kDefaultGemvMaxRows), a 4th padded row would send them to cuBLASLt.
constexpr int kGraphBuckets[] = {1,  2,  3,  4,  8,  16,  24,  32,  40,  48,  56,  64,
                                 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512};
constexpr size_t kStagingBytes = size_t{64} << 20;
constexpr size_t kGraphReserveBytes = size_t{512} << 20;  // graphs, cuBLAS/cub lazies, slack

size_t AlignUp(size_t x, size_t a = 256) { return (x + a - 1) / a * a; }

// Every weight of one layer on the device (T elements; nullptr where absent).
struct DeviceLayer {
  void* input_norm = nullptr;
  void* qkv = nullptr;       // [q_size + 2 kv_size, hidden]
  void* qkv_bias = nullptr;  // [q_size + 2 kv_size]
  void* q_norm = nullptr;    // [head_dim]
  void* k_norm = nullptr;
  void* o = nullptr;  // [hidden, q_size]
  void* post_norm = nullptr;
  void* gate_up = nullptr;  // [2 inter, hidden]
  void* down = nullptr;     // [hidden, inter]
  void* k_cache = nullptr;  // [num_slots, kv_heads, head_dim]
  void* v_cache = nullptr;
};

// Byte offsets of the per-step metadata arrays, packed back to back in the pinned and device
// metadata buffers so that one copy uploads a step. The layout depends only on the counts, so a
// decode bucket always gets the same one (its graph reads the device buffer at fixed offsets).
struct MetaLayout {
  size_t slot_mapping = 0, token_ids = 0, positions = 0, cu_seqlens_q = 0, seq_lens = 0,
         logits_indices = 0, hidden_indices = 0, block_tables = 0, deferred = 0, total = 0;
};

// deferred (last, so that a graph's offsets do not depend on it): [num_deferred, 2] int32 pairs
// (token row, sample row).
MetaLayout PackLayout(int num_tokens, int num_seqs, int num_logits, int num_hidden,
                      int blocks_per_seq, int num_deferred = 0) {
  MetaLayout l;
  size_t off = 0;
  auto take = [&](size_t bytes) {
    const size_t at = off;
    off += (bytes + 15) / 16 * 16;
    return at;
  };
  l.slot_mapping = take(static_cast<size_t>(num_tokens) * 8);
  l.token_ids = take(static_cast<size_t>(num_tokens) * 4);
  l.positions = take(static_cast<size_t>(num_tokens) * 4);
  l.cu_seqlens_q = take(static_cast<size_t>(num_seqs + 1) * 4);
  l.seq_lens = take(static_cast<size_t>(num_seqs) * 4);
  l.logits_indices = take(static_cast<size_t>(num_logits) * 4);
  l.hidden_indices = take(static_cast<size_t>(num_hidden) * 4);
  l.block_tables = take(static_cast<size_t>(num_seqs) * blocks_per_seq * 4);
  l.deferred = take(static_cast<size_t>(num_deferred) * 8);
  l.total = off;
  return l;
}

// indices == [0, n).
bool IsIdentity(const std::vector<int32_t>& indices, int n) {
  if (static_cast<int>(indices.size()) != n) return false;
  for (int i = 0; i < n; ++i) {
    if (indices[static_cast<size_t>(i)] != i) return false;
  }
  return true;
}

// The host-side shape of one model run (fixed inside a captured graph).
struct RunShape {
  int num_tokens = 0;
  int num_seqs = 0;
  int num_logits = 0;
  int num_hidden = 0;
  int max_seqlen_q = 0;
  int max_seq_len = 0;
  int blocks_per_seq = 0;  // block-table row stride
  // logits_indices == [0, num_tokens): the lm_head reads the normed rows in place (decode).
  bool logits_identity = false;
  MetaLayout meta;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend(std::shared_ptr<const LoadedModel> model, const CudaBackendOptions& options)
      : model_(std::move(model)), config_(model_->config), options_(options) {}
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  Status Init();

  const ModelConfig& config() const override { return config_; }
  int block_size() const override { return options_.block_size; }
  int64_t num_kv_blocks() const override { return num_kv_blocks_; }
  Status Forward(const ForwardBatch& batch) override;
  Status SampleAsync(std::span<const SamplingRow> rows) override;
  bool SampleReady() override { return sampler_.Ready(); }
  Status WaitSample(std::vector<SampleResult>* results) override;
  Status GetLogits(std::vector<float>* logits) override;
  Status GetHidden(std::vector<float>* hidden) override;
  // KV block transfers: cuda/kv_transfer.h (a pinned host pool, a copy stream, events).
  int64_t kv_block_record_bytes() const override {
    return int64_t{2} * config_.num_hidden_layers * options_.block_size * config_.kv_size() *
           static_cast<int64_t>(elem_);
  }
  std::string kv_record_layout() const override {
    return std::string("cuda-") + (dtype_ == ElemType::kF32 ? "f32" : "bf16") +
           " layers=" + std::to_string(config_.num_hidden_layers) +
           " kv_heads=" + std::to_string(config_.num_key_value_heads) +
           " head_dim=" + std::to_string(config_.head_dim) +
           " block=" + std::to_string(options_.block_size) + " [layer][K,V][block][head][dim]";
  }
  Status AllocateHostKvPool(int64_t num_records) override {
    std::vector<void*> halves;
    for (const DeviceLayer& l : layers_) {
      halves.push_back(l.k_cache);
      halves.push_back(l.v_cache);
    }
    const int64_t run = int64_t{options_.block_size} * config_.kv_size() *
                        static_cast<int64_t>(elem_);
    return kv_transfer_.Init(halves, run, num_kv_blocks_, stream_, num_records);
  }
  uint8_t* host_kv_pool() override { return kv_transfer_.host_pool(); }
  StatusOr<uint64_t> CopyKvBlocks(KvCopyDirection direction,
                                  std::span<const KvBlockCopy> copies) override {
    return kv_transfer_.Copy(direction, copies);
  }
  bool KvCopyDone(uint64_t ticket, double* seconds) override {
    return kv_transfer_.Done(ticket, seconds);
  }

 private:
  Status UploadWeights();
  Status Materialize(const Tensor& tensor, void* dst);
  Status AllocateActivations();
  Status AllocateKvCache(int64_t num_blocks);
  Status ProfileAndPlanKv();
  Status ValidateBatch(const ForwardBatch& batch) const;
  // Packs the batch (padded to `padded_seqs` decode rows when > num_seqs) into the pinned buffer
  // and queues its upload.
  Status UploadMetadata(const ForwardBatch& batch, int padded_seqs, RunShape* shape);
  Status RunModel(const RunShape& shape);
  template <typename T>
  Status RunModelT(const RunShape& shape);
  Status RunDecodeGraph(const RunShape& shape);

  template <typename U>
  U* Meta(size_t offset) const {
    return reinterpret_cast<U*>(static_cast<char*>(meta_dev_.get()) + offset);
  }
  size_t MetaCapacity() const {
    return PackLayout(max_tokens_, max_seqs_, max_logits_, max_tokens_, max_blocks_per_seq_,
                      max_tokens_)
        .total;
  }
  cudaDataType_t gemm_type() const {
    return dtype_ == ElemType::kF32 ? CUDA_R_32F : CUDA_R_16BF;
  }

  std::shared_ptr<const LoadedModel> model_;
  ModelConfig config_;
  CudaBackendOptions options_;
  ElemType dtype_ = ElemType::kBF16;
  size_t elem_ = 2;
  cudaStream_t stream_ = nullptr;
  cuda::Gemm gemm_;

  // Weights.
  DeviceBuffer weights_;
  DeviceBuffer staging_;  // host-tensor upload chunks (freed after UploadWeights)
  void* embed_ = nullptr;
  void* lm_head_ = nullptr;
  void* final_norm_ = nullptr;
  std::vector<DeviceLayer> layers_;
  DeviceBuffer inv_freq_;
  float attention_scaling_ = 1.0f;

  // KV cache.
  DeviceBuffer kv_;
  int64_t num_kv_blocks_ = 0;
  int max_blocks_per_seq_ = 0;  // block-table row stride on the device

  // Activations ([max_tokens, ...] of T unless noted).
  int max_tokens_ = 0;
  int max_seqs_ = 0;
  int max_logits_ = 0;
  DeviceBuffer x_, residual_, normed_, qkv_, attn_, gate_up_, act_, lm_in_;
  DeviceBuffer residual2_;   // one row of T: the other half of the fused batch-1 residual pair
  DeviceBuffer logits_;      // float32 [max_logits, vocab]
  DeviceBuffer hidden_out_;  // float32 [max_tokens, hidden]
  DeviceBuffer attn_workspace_;

  // Per-step metadata: one device copy, two pinned staging buffers (host writes one while the
  // previous upload may still be in flight).
  DeviceBuffer meta_dev_;
  PinnedBuffer meta_host_[2];
  cudaEvent_t meta_done_[2] = {nullptr, nullptr};
  int meta_cur_ = 0;

  // Last Forward.
  int last_num_logits_ = 0;
  int last_num_hidden_ = 0;
  bool has_forward_ = false;

  cuda::GpuSampler sampler_;
  cuda::KvTransfer kv_transfer_;

  // Device timeline (options_.record_device_timeline): events around each Forward / SampleAsync.
  cuda::DeviceTimelineRecorder timeline_;

 public:
  Status CollectTimeline(bool wait, bool reset, DeviceTimeline* out) {
    return timeline_.Collect(stream_, wait, reset, out);
  }

 private:
  // Decode graphs per (batch bucket, context band).
  std::map<std::pair<int, int>, cudaGraphExec_t> graphs_;
};

CudaBackend::~CudaBackend() {
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  for (auto& [bucket, exec] : graphs_) cudaGraphExecDestroy(exec);
  for (cudaEvent_t e : meta_done_) {
    if (e != nullptr) cudaEventDestroy(e);
  }
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

Status CudaBackend::Init() {
  KILN_RETURN_IF_ERROR(options_.Validate());
  KILN_RETURN_IF_ERROR(config_.Validate());
  if (options_.dtype == "float32") {
    dtype_ = ElemType::kF32;
  } else if (options_.dtype == "bfloat16") {
    dtype_ = ElemType::kBF16;
  } else {
    return Status::InvalidArgument("CUDA backend dtype must be bfloat16 or float32, got '" +
                                   options_.dtype + "'");
  }
  elem_ = cuda::ElemSize(dtype_);
  int num_devices = 0;
  if (cudaGetDeviceCount(&num_devices) != cudaSuccess || num_devices == 0) {
    cudaGetLastError();
    return Status::FailedPrecondition("no CUDA device available");
  }
  if (options_.device_id < 0 || options_.device_id >= num_devices) {
    return Status::InvalidArgument("CUDA device " + std::to_string(options_.device_id) +
                                   " does not exist (" + std::to_string(num_devices) + " found)");
  }
  KILN_CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device_id));
  KILN_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  for (cudaEvent_t& e : meta_done_) {
    KILN_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  }
  KILN_RETURN_IF_ERROR(gemm_.Init());

  const int max_model_len =
      options_.max_model_len > 0 ? options_.max_model_len : config_.max_position_embeddings;
  max_tokens_ = options_.max_num_batched_tokens;
  max_seqs_ = options_.max_num_seqs;
  max_logits_ = std::max(max_seqs_, 256);
  max_blocks_per_seq_ =
      (std::max(max_model_len, max_tokens_) + options_.block_size - 1) / options_.block_size;

  KILN_RETURN_IF_ERROR(UploadWeights());
  KILN_RETURN_IF_ERROR(AllocateActivations());
  if (options_.num_kv_blocks > 0) {
    KILN_RETURN_IF_ERROR(AllocateKvCache(options_.num_kv_blocks));
  } else {
    KILN_RETURN_IF_ERROR(ProfileAndPlanKv());
  }
  KILN_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  KILN_LOG(INFO) << "cuda backend: " << num_kv_blocks_ << " KV blocks of " << options_.block_size
                 << " tokens, weights " << (weights_.size_bytes() >> 20) << " MiB, dtype "
                 << options_.dtype;
  return Status::Ok();
}

Status CudaBackend::Materialize(const Tensor& tensor, void* dst) {
  const int64_t count = tensor.numel();
  if (tensor.is_dummy()) {
    KILN_CUDA_RETURN_IF_ERROR(cuda::LaunchFillDummy(dst, dtype_, count, tensor.dummy_seed,
                                                    tensor.dummy_fill == Tensor::DummyFill::kOnes,
                                                    stream_));
    return Status::Ok();
  }
  cuda::SrcType src_type;
  switch (tensor.dtype) {
    case DType::kF32: src_type = cuda::SrcType::kF32; break;
    case DType::kF16: src_type = cuda::SrcType::kF16; break;
    case DType::kBF16: src_type = cuda::SrcType::kBF16; break;
    default:
      return Status::Unimplemented("CUDA backend cannot upload tensors of dtype " +
                                   std::string(DTypeName(tensor.dtype)));
  }
  if (tensor.data == nullptr) return Status::Internal("tensor without data");
  const size_t src_elem = DTypeSize(tensor.dtype);
  if (tensor.size_bytes < static_cast<size_t>(count) * src_elem) {
    return Status::DataLoss("tensor holds fewer bytes than its shape needs");
  }
  if (staging_.get() == nullptr) KILN_RETURN_IF_ERROR(staging_.Allocate(kStagingBytes));
  DeviceBuffer& stage = staging_;
  const int64_t chunk = static_cast<int64_t>(kStagingBytes / src_elem);
  for (int64_t begin = 0; begin < count; begin += chunk) {
    const int64_t n = std::min(chunk, count - begin);
    KILN_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
        stage.get(), static_cast<const char*>(tensor.data) + begin * src_elem, n * src_elem,
        cudaMemcpyHostToDevice, stream_));
    KILN_CUDA_RETURN_IF_ERROR(cuda::LaunchConvert(stage.get(), src_type,
                                                  static_cast<char*>(dst) + begin * elem_,
                                                  dtype_, n, stream_));
  }
  return Status::Ok();  // stream order keeps the next chunk's copy after this conversion
}

Status CudaBackend::UploadWeights() {
  const LlamaWeights& w = model_->weights;
  const ModelConfig& c = config_;
  if (static_cast<int>(w.layers.size()) != c.num_hidden_layers) {
    return Status::InvalidArgument("weights have " + std::to_string(w.layers.size()) +
                                   " layers, config says " + std::to_string(c.num_hidden_layers));
  }
  const int64_t h = c.hidden_size, q = c.q_size(), kv = c.kv_size(), inter = c.intermediate_size;
  const int64_t qkv = q + 2 * kv;
  const bool tied = c.tie_word_embeddings || !w.lm_head.defined();
  // Arena plan: element counts of each piece, in order.
  std::vector<std::pair<void**, int64_t>> pieces;
  pieces.push_back({&embed_, c.vocab_size * h});
  if (!tied) pieces.push_back({&lm_head_, c.vocab_size * h});
  pieces.push_back({&final_norm_, h});
  layers_.assign(static_cast<size_t>(c.num_hidden_layers), DeviceLayer{});
  for (DeviceLayer& l : layers_) {
    pieces.push_back({&l.input_norm, h});
    pieces.push_back({&l.qkv, qkv * h});
    if (c.attention_bias) pieces.push_back({&l.qkv_bias, qkv});
    if (c.qk_norm) {
      pieces.push_back({&l.q_norm, c.head_dim});
      pieces.push_back({&l.k_norm, c.head_dim});
    }
    pieces.push_back({&l.o, h * q});
    pieces.push_back({&l.post_norm, h});
    pieces.push_back({&l.gate_up, 2 * inter * h});
    pieces.push_back({&l.down, h * inter});
  }
  size_t total = 0;
  for (auto& [ptr, count] : pieces) total += AlignUp(static_cast<size_t>(count) * elem_);
  KILN_RETURN_IF_ERROR(weights_.Allocate(total).WithContext("allocating weights"));
  size_t off = 0;
  for (auto& [ptr, count] : pieces) {
    *ptr = static_cast<char*>(weights_.get()) + off;
    off += AlignUp(static_cast<size_t>(count) * elem_);
  }
  if (tied) lm_head_ = embed_;

  auto at_row = [&](void* base, int64_t row, int64_t cols) {
    return static_cast<char*>(base) + row * cols * static_cast<int64_t>(elem_);
  };
  KILN_RETURN_IF_ERROR(Materialize(w.embed_tokens, embed_));
  if (!tied) KILN_RETURN_IF_ERROR(Materialize(w.lm_head, lm_head_));
  KILN_RETURN_IF_ERROR(Materialize(w.norm, final_norm_));
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const LlamaWeights::Layer& src = w.layers[static_cast<size_t>(i)];
    DeviceLayer& l = layers_[static_cast<size_t>(i)];
    KILN_RETURN_IF_ERROR(Materialize(src.input_layernorm, l.input_norm));
    KILN_RETURN_IF_ERROR(Materialize(src.q_proj, at_row(l.qkv, 0, h)));
    KILN_RETURN_IF_ERROR(Materialize(src.k_proj, at_row(l.qkv, q, h)));
    KILN_RETURN_IF_ERROR(Materialize(src.v_proj, at_row(l.qkv, q + kv, h)));
    if (c.attention_bias) {
      KILN_RETURN_IF_ERROR(Materialize(src.q_bias, at_row(l.qkv_bias, 0, 1)));
      KILN_RETURN_IF_ERROR(Materialize(src.k_bias, at_row(l.qkv_bias, q, 1)));
      KILN_RETURN_IF_ERROR(Materialize(src.v_bias, at_row(l.qkv_bias, q + kv, 1)));
    }
    if (c.qk_norm) {
      KILN_RETURN_IF_ERROR(Materialize(src.q_norm, l.q_norm));
      KILN_RETURN_IF_ERROR(Materialize(src.k_norm, l.k_norm));
    }
    KILN_RETURN_IF_ERROR(Materialize(src.o_proj, l.o));
    KILN_RETURN_IF_ERROR(Materialize(src.post_attention_layernorm, l.post_norm));
    KILN_RETURN_IF_ERROR(Materialize(src.gate_proj, at_row(l.gate_up, 0, h)));
    KILN_RETURN_IF_ERROR(Materialize(src.up_proj, at_row(l.gate_up, inter, h)));
    KILN_RETURN_IF_ERROR(Materialize(src.down_proj, l.down));
  }
  const cpu::RopeTable rope = cpu::ComputeRopeTable(c);
  attention_scaling_ = rope.attention_scaling;
  KILN_RETURN_IF_ERROR(inv_freq_.Allocate(rope.inv_freq.size() * sizeof(float)));
  KILN_CUDA_RETURN_IF_ERROR(cudaMemcpy(inv_freq_.get(), rope.inv_freq.data(),
                                       rope.inv_freq.size() * sizeof(float),
                                       cudaMemcpyHostToDevice));
  KILN_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  staging_.Reset();
  return Status::Ok();
}

Status CudaBackend::AllocateActivations() {
  const ModelConfig& c = config_;
  const size_t t = static_cast<size_t>(max_tokens_);
  KILN_RETURN_IF_ERROR(x_.Allocate(t * c.hidden_size * elem_));
  KILN_RETURN_IF_ERROR(residual_.Allocate(t * c.hidden_size * elem_));
  KILN_RETURN_IF_ERROR(residual2_.Allocate(c.hidden_size * elem_));
  KILN_RETURN_IF_ERROR(normed_.Allocate(t * c.hidden_size * elem_));
  KILN_RETURN_IF_ERROR(qkv_.Allocate(t * (c.q_size() + 2 * c.kv_size()) * elem_));
  KILN_RETURN_IF_ERROR(attn_.Allocate(t * c.q_size() * elem_));
  KILN_RETURN_IF_ERROR(gate_up_.Allocate(t * 2 * c.intermediate_size * elem_));
  KILN_RETURN_IF_ERROR(act_.Allocate(t * c.intermediate_size * elem_));
  KILN_RETURN_IF_ERROR(lm_in_.Allocate(static_cast<size_t>(max_logits_) * c.hidden_size * elem_));
  KILN_RETURN_IF_ERROR(
      logits_.Allocate(static_cast<size_t>(max_logits_) * c.vocab_size * sizeof(float)));
  KILN_RETURN_IF_ERROR(hidden_out_.Allocate(t * c.hidden_size * sizeof(float)));
  KILN_RETURN_IF_ERROR(attn_workspace_.Allocate(kernels::PagedAttentionWorkspaceSize(
      std::max(max_seqs_, 64) * kernels::kDecodeMaxQueryLen, c.num_attention_heads, c.head_dim,
      kernels::kMaxKvSplits)));

  // Metadata (capacity for the largest step; graph-padded decode steps are smaller).
  KILN_RETURN_IF_ERROR(meta_dev_.Allocate(MetaCapacity()));
  for (PinnedBuffer& b : meta_host_) KILN_RETURN_IF_ERROR(b.Allocate(MetaCapacity()));

  KILN_RETURN_IF_ERROR(sampler_.Init(max_logits_, c.vocab_size));
  return Status::Ok();
}

Status CudaBackend::AllocateKvCache(int64_t num_blocks) {
  const ModelConfig& c = config_;
  const size_t per_layer = static_cast<size_t>(num_blocks) * options_.block_size * c.kv_size() *
                           elem_;
  kv_.Reset();
  KILN_RETURN_IF_ERROR(kv_.Allocate(2 * per_layer * c.num_hidden_layers)
                           .WithContext("allocating " + std::to_string(num_blocks) +
                                        " KV blocks"));
  char* base = static_cast<char*>(kv_.get());
  for (size_t i = 0; i < layers_.size(); ++i) {
    layers_[i].k_cache = base + (2 * i) * per_layer;
    layers_[i].v_cache = base + (2 * i + 1) * per_layer;
  }
  num_kv_blocks_ = num_blocks;
  return Status::Ok();
}

Status CudaBackend::ProfileAndPlanKv() {
  // A throw-away cache big enough for one max_tokens prefill, then one profiling forward.
  const int bs = options_.block_size;
  const int64_t probe_blocks = (max_tokens_ + bs - 1) / bs;
  KILN_RETURN_IF_ERROR(AllocateKvCache(probe_blocks));
  const size_t probe_bytes = kv_.size_bytes();
  ForwardBatch batch;
  batch.token_ids.assign(static_cast<size_t>(max_tokens_), 0);
  for (int i = 0; i < max_tokens_; ++i) {
    batch.positions.push_back(i);
    batch.slot_mapping.push_back(i);
  }
  batch.cu_seqlens_q = {0, max_tokens_};
  batch.seq_lens = {max_tokens_};
  batch.max_blocks_per_seq = static_cast<int>(probe_blocks);
  for (int64_t b = 0; b < probe_blocks; ++b) batch.block_tables.push_back(static_cast<int32_t>(b));
  batch.logits_indices = {max_tokens_ - 1};
  KILN_RETURN_IF_ERROR(Forward(batch).WithContext("profiling forward"));
  KILN_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  size_t free_bytes = 0, total_bytes = 0;
  KILN_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_bytes, &total_bytes));
  const double budget = options_.gpu_memory_utilization * static_cast<double>(total_bytes);
  const double used_without_kv =
      static_cast<double>(total_bytes - free_bytes) - static_cast<double>(probe_bytes);
  const double per_block = 2.0 * config_.num_hidden_layers * bs * config_.kv_size() * elem_;
  const double reserve = options_.enable_cuda_graphs ? kGraphReserveBytes : kGraphReserveBytes / 2;
  const int64_t blocks =
      static_cast<int64_t>((budget - used_without_kv - reserve) / per_block);
  if (blocks < 1) {
    return Status::ResourceExhausted(
        "no GPU memory left for the KV cache: weights+activations use " +
        std::to_string(static_cast<int64_t>(used_without_kv) >> 20) + " MiB of a " +
        std::to_string(static_cast<int64_t>(budget) >> 20) +
        " MiB budget (raise gpu_memory_utilization or lower max_num_batched_tokens)");
  }
  kv_.Reset();
  return AllocateKvCache(blocks);
}

Status CudaBackend::ValidateBatch(const ForwardBatch& b) const {
  const int n = b.num_tokens(), s = b.num_seqs();
  if (n == 0 || s == 0) return Status::InvalidArgument("empty ForwardBatch");
  if (n > max_tokens_) {
    return Status::InvalidArgument("batch has " + std::to_string(n) +
                                   " tokens, more than max_num_batched_tokens " +
                                   std::to_string(max_tokens_));
  }
  if (s > max_seqs_) {
    return Status::InvalidArgument("batch has " + std::to_string(s) +
                                   " sequences, more than max_num_seqs " + std::to_string(max_seqs_));
  }
  if (b.positions.size() != static_cast<size_t>(n) || b.slot_mapping.size() != static_cast<size_t>(n) ||
      b.cu_seqlens_q.size() != static_cast<size_t>(s + 1) || b.cu_seqlens_q[0] != 0 ||
      b.cu_seqlens_q[static_cast<size_t>(s)] != n) {
    return Status::InvalidArgument("ForwardBatch arrays disagree on num_tokens / num_seqs");
  }
  if (b.max_blocks_per_seq <= 0 ||
      static_cast<int64_t>(s) * b.max_blocks_per_seq >
          static_cast<int64_t>(max_seqs_) * max_blocks_per_seq_ ||
      b.block_tables.size() != static_cast<size_t>(s) * b.max_blocks_per_seq) {
    return Status::InvalidArgument("block_tables shape is wrong or too large");
  }
  if (static_cast<int>(b.logits_indices.size()) > max_logits_) {
    return Status::InvalidArgument("too many logits rows: " +
                                   std::to_string(b.logits_indices.size()));
  }
  for (int32_t id : b.token_ids) {
    if (id < 0 || id >= config_.vocab_size) {
      return Status::InvalidArgument("token id " + std::to_string(id) + " outside vocabulary");
    }
  }
  const int64_t num_slots = num_kv_blocks_ * options_.block_size;
  for (int64_t slot : b.slot_mapping) {
    if (slot >= num_slots) return Status::InvalidArgument("slot_mapping past the KV cache");
  }
  for (int i = 0; i < s; ++i) {
    const int q_len = b.cu_seqlens_q[i + 1] - b.cu_seqlens_q[i];
    const int len = b.seq_lens[static_cast<size_t>(i)];
    if (q_len < 0 || len < q_len) return Status::InvalidArgument("seq_lens < new tokens");
    const int blocks = (len + options_.block_size - 1) / options_.block_size;
    if (blocks > b.max_blocks_per_seq) return Status::InvalidArgument("block table too short");
    if (blocks > max_blocks_per_seq_) {
      return Status::InvalidArgument("sequence of " + std::to_string(len) +
                                     " tokens is longer than max_model_len");
    }
    for (int j = 0; j < blocks; ++j) {
      const int32_t blk = b.block_tables[static_cast<size_t>(i) * b.max_blocks_per_seq + j];
      if (blk < 0 || blk >= num_kv_blocks_) {
        return Status::InvalidArgument("block id " + std::to_string(blk) + " outside the KV cache");
      }
    }
  }
  for (int32_t r : b.logits_indices) {
    if (r < 0 || r >= n) return Status::InvalidArgument("logits index outside the batch");
  }
  for (int32_t r : b.hidden_indices) {
    if (r < 0 || r >= n) return Status::InvalidArgument("hidden index outside the batch");
  }
  for (const DeferredToken& d : b.deferred_tokens) {
    if (d.token_row < 0 || d.token_row >= n) {
      return Status::InvalidArgument("deferred token row outside the batch");
    }
    if (d.sample_row < 0 || d.sample_row >= sampler_.last_num_rows()) {
      return Status::InvalidArgument("deferred token takes sample row " +
                                     std::to_string(d.sample_row) + " of a step that sampled " +
                                     std::to_string(sampler_.last_num_rows()) + " rows");
    }
  }
  return Status::Ok();
}

Status CudaBackend::UploadMetadata(const ForwardBatch& b, int padded_seqs, RunShape* shape) {
  const int n = b.num_tokens(), s = b.num_seqs();
  const int ps = std::max(padded_seqs, s);
  const int pn = n + (ps - s);  // padded rows are single-token decode rows
  const int nl = padded_seqs > s ? ps : static_cast<int>(b.logits_indices.size());
  const int nh = static_cast<int>(b.hidden_indices.size());
  // Block tables keep the batch's stride, except inside graphs (fixed at the device maximum).
  const int stride = padded_seqs > 0 ? max_blocks_per_seq_ : b.max_blocks_per_seq;
  const int nd = static_cast<int>(b.deferred_tokens.size());
  const MetaLayout l = PackLayout(pn, ps, nl, nh, stride, nd);
  meta_cur_ ^= 1;
  KILN_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(meta_done_[meta_cur_]));
  char* host = meta_host_[meta_cur_].as<char>();
  auto i32 = [&](size_t off) { return reinterpret_cast<int32_t*>(host + off); };
  int64_t* slots = reinterpret_cast<int64_t*>(host + l.slot_mapping);
  std::memcpy(slots, b.slot_mapping.data(), static_cast<size_t>(n) * 8);
  std::memcpy(i32(l.token_ids), b.token_ids.data(), static_cast<size_t>(n) * 4);
  std::memcpy(i32(l.positions), b.positions.data(), static_cast<size_t>(n) * 4);
  std::memcpy(i32(l.cu_seqlens_q), b.cu_seqlens_q.data(), static_cast<size_t>(s + 1) * 4);
  std::memcpy(i32(l.seq_lens), b.seq_lens.data(), static_cast<size_t>(s) * 4);
  if (!b.logits_indices.empty()) {
    std::memcpy(i32(l.logits_indices), b.logits_indices.data(), b.logits_indices.size() * 4);
  }
  if (nh > 0) std::memcpy(i32(l.hidden_indices), b.hidden_indices.data(), static_cast<size_t>(nh) * 4);
  static_assert(sizeof(DeferredToken) == 8);
  if (nd > 0) std::memcpy(i32(l.deferred), b.deferred_tokens.data(), static_cast<size_t>(nd) * 8);
  int32_t* tables = i32(l.block_tables);
  if (stride == b.max_blocks_per_seq) {
    std::memcpy(tables, b.block_tables.data(), b.block_tables.size() * 4);
  } else {
    const int width = std::min(stride, b.max_blocks_per_seq);  // validated: enough for seq_lens
    for (int i = 0; i < s; ++i) {
      std::memcpy(tables + static_cast<size_t>(i) * stride,
                  b.block_tables.data() + static_cast<size_t>(i) * b.max_blocks_per_seq,
                  static_cast<size_t>(width) * 4);
    }
  }
  // Padding rows: token 0 at position 0 of a 1-token sequence over block 0; no KV write.
  for (int i = s; i < ps; ++i) {
    const int row = n + (i - s);
    i32(l.token_ids)[row] = 0;
    i32(l.positions)[row] = 0;
    slots[row] = -1;
    i32(l.cu_seqlens_q)[i + 1] = row + 1;
    i32(l.seq_lens)[i] = 1;
    tables[static_cast<size_t>(i) * stride] = 0;
    i32(l.logits_indices)[i] = row;
  }
  bool identity = nl == pn;
  for (int i = 0; identity && i < nl; ++i) identity = i32(l.logits_indices)[i] == i;
  int max_q = 0, max_len = 0;
  for (int i = 0; i < s; ++i) {
    max_q = std::max(max_q, b.cu_seqlens_q[i + 1] - b.cu_seqlens_q[i]);
    max_len = std::max(max_len, b.seq_lens[static_cast<size_t>(i)]);
  }
  if (options_.record_device_timeline) timeline_.Begin(stream_);
  KILN_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(meta_dev_.get(), host, l.total, cudaMemcpyHostToDevice, stream_));
  KILN_CUDA_RETURN_IF_ERROR(cudaEventRecord(meta_done_[meta_cur_], stream_));
  shape->num_tokens = pn;
  shape->num_seqs = ps;
  shape->num_logits = nl;
  shape->num_hidden = nh;
  shape->max_seqlen_q = std::max(max_q, 1);
  shape->max_seq_len = max_len;
  shape->blocks_per_seq = stride;
  shape->logits_identity = identity;
  shape->meta = l;
  return Status::Ok();
}

Status CudaBackend::Forward(const ForwardBatch& batch) {
  has_forward_ = false;
  KILN_RETURN_IF_ERROR(ValidateBatch(batch));
  const int s = batch.num_seqs();
  int bucket = 0;
  if (options_.enable_cuda_graphs && batch.is_decode_only && batch.num_tokens() == s &&
      batch.hidden_indices.empty() && IsIdentity(batch.logits_indices, s)) {
    // (logits row i is token i, as a graph's lm_head assumes: RunShape::logits_identity)
    for (int b : kGraphBuckets) {
      if (b >= s && b <= max_seqs_ && b <= max_tokens_) {
        bucket = b;
        break;
      }
    }
  }
  RunShape shape;
  KILN_RETURN_IF_ERROR(UploadMetadata(batch, bucket, &shape));
  if (!batch.deferred_tokens.empty()) {  // ids the last SampleAsync left on the device
    KILN_CUDA_RETURN_IF_ERROR(cuda::LaunchFillDeferredTokens(
        Meta<int32_t>(shape.meta.token_ids), Meta<int32_t>(shape.meta.deferred),
        static_cast<int>(batch.deferred_tokens.size()), sampler_.device_token_ids(),
        config_.vocab_size, stream_));
  }
  if (bucket > 0) {
    KILN_RETURN_IF_ERROR(RunDecodeGraph(shape));
  } else {
    KILN_RETURN_IF_ERROR(RunModel(shape));
  }
  if (options_.record_device_timeline) timeline_.End(stream_);
  last_num_logits_ = static_cast<int>(batch.logits_indices.size());
  last_num_hidden_ = static_cast<int>(batch.hidden_indices.size());
  has_forward_ = true;
  return Status::Ok();
}

Status CudaBackend::RunDecodeGraph(const RunShape& shape) {
  // Inside a graph the attention grid must not depend on the step: the context bound is fixed to
  // the band's top (512, 1024, 2048, ... tokens), so the KV split count matches what an eager step
  // of that band would choose, and a graph exists per (batch bucket, band).
  int band = 512;
  while (band < shape.max_seq_len) band *= 2;
  band = std::min(band, max_blocks_per_seq_ * options_.block_size);
  RunShape fixed = shape;
  fixed.max_seq_len = std::max(band, shape.max_seq_len);
  fixed.max_seqlen_q = 1;
  const std::pair<int, int> key(shape.num_seqs, fixed.max_seq_len);
  auto it = graphs_.find(key);
  if (it == graphs_.end()) {
    // First time at this size: run eagerly (warms cuBLASLt plans), then capture for next time.
    KILN_RETURN_IF_ERROR(RunModel(fixed));
    cudaGraph_t graph = nullptr;
    KILN_CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    const Status run = RunModel(fixed);
    const cudaError_t end = cudaStreamEndCapture(stream_, &graph);
    KILN_RETURN_IF_ERROR(run.WithContext("capturing decode graph"));
    KILN_CUDA_RETURN_IF_ERROR(end);
    cudaGraphExec_t exec = nullptr;
    const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    KILN_CUDA_RETURN_IF_ERROR(inst);
    graphs_.emplace(key, exec);
    return Status::Ok();
  }
  KILN_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(it->second, stream_));
  return Status::Ok();
}

Status CudaBackend::RunModel(const RunShape& shape) {
  if (dtype_ == ElemType::kF32) return RunModelT<float>(shape);
  return RunModelT<__nv_bfloat16>(shape);
}

template <typename T>
Status CudaBackend::RunModelT(const RunShape& shape) {
  const ModelConfig& c = config_;
  const int n = shape.num_tokens;
  const int h = c.hidden_size, q = c.q_size(), kv = c.kv_size(), inter = c.intermediate_size;
  const int qkv_width = q + 2 * kv;
  const float eps = static_cast<float>(c.rms_norm_eps);
  const cudaDataType_t gt = gemm_type();
  T* x = x_.as<T>();
  T* residual = residual_.as<T>();
  T* normed = normed_.as<T>();
  T* qkv = qkv_.as<T>();

  // Batch-1 bf16 decode: the add+RMSNorm before qkv / gate_up runs inside those GEMVs, and the
  // gate_up GEMV stores SiLU·mul of its output (kernels::GemvPrologue, silu_mul_epilogue). A fused
  // add+norm reads the residual from one buffer and writes the sum to the other (its blocks all
  // read the old one), so `residual` alternates between residual_ and residual2_ (one row).
  const bool fuse_norm = gemm_.FusesPrologue(gt, n, h);
  T* residual_spare = residual2_.as<T>();
  auto norm_gemv = [&](const T* addend, const void* norm_weight, const void* w, const void* bias,
                       void* y, int64_t m, bool silu_mul,
                       const kernels::GemvRopeParams* rope) -> Status {
    kernels::GemvPrologueParams pro;
    pro.kind = kernels::GemvPrologue::kAddRmsNorm;
    pro.addend = reinterpret_cast<const __nv_bfloat16*>(addend);
    pro.residual = reinterpret_cast<const __nv_bfloat16*>(residual);
    pro.norm_weight = static_cast<const __nv_bfloat16*>(norm_weight);
    pro.eps = eps;
    if (addend != nullptr) {
      pro.residual_out = reinterpret_cast<__nv_bfloat16*>(residual_spare);
      std::swap(residual, residual_spare);
    }
    return gemm_.RunPrologue(pro, w, bias, y, m, h, stream_, silu_mul, rope);
  };

  kernels::EmbeddingGatherParams<T> emb;
  emb.token_ids = Meta<int32_t>(shape.meta.token_ids);
  emb.table = static_cast<const T*>(embed_);
  emb.out = residual;
  emb.num_tokens = n;
  emb.vocab_size = c.vocab_size;
  emb.hidden_size = h;
  KILN_CUDA_RETURN_IF_ERROR(kernels::EmbeddingGather(emb, stream_));

  for (size_t li = 0; li < layers_.size(); ++li) {
    const DeviceLayer& L = layers_[li];
    kernels::RmsNormParams<T> norm;
    norm.x = li == 0 ? residual : x;
    norm.residual = li == 0 ? nullptr : residual;
    norm.weight = static_cast<const T*>(L.input_norm);
    norm.out = normed;
    norm.num_tokens = n;
    norm.hidden_size = h;
    norm.eps = eps;
    kernels::RopeKvCacheParams<T> rope;
    rope.q = qkv;
    rope.q_stride = qkv_width;
    rope.k = qkv + q;
    rope.k_stride = qkv_width;
    rope.v = qkv + q + kv;
    rope.v_stride = qkv_width;
    rope.q_norm_weight = static_cast<const T*>(L.q_norm);
    rope.k_norm_weight = static_cast<const T*>(L.k_norm);
    rope.norm_eps = eps;
    rope.positions = Meta<int32_t>(shape.meta.positions);
    rope.inv_freq = inv_freq_.as<float>();
    rope.attention_scaling = attention_scaling_;
    rope.interleaved = c.rope_interleaved;
    rope.slot_mapping = Meta<int64_t>(shape.meta.slot_mapping);
    rope.k_cache = static_cast<T*>(L.k_cache);
    rope.v_cache = static_cast<T*>(L.v_cache);
    rope.num_tokens = n;
    rope.num_heads = c.num_attention_heads;
    rope.num_kv_heads = c.num_key_value_heads;
    rope.head_dim = c.head_dim;
    // Batch 1 without q/k norms: RoPE and the KV-cache write in the qkv GEMV's epilogue too.
    const bool fuse_rope =
        fuse_norm && L.q_norm == nullptr && L.k_norm == nullptr && !c.rope_interleaved;
    if (fuse_norm) {
      kernels::GemvRopeParams fused_rope;
      fused_rope.enabled = fuse_rope;
      fused_rope.num_heads = c.num_attention_heads;
      fused_rope.num_kv_heads = c.num_key_value_heads;
      fused_rope.head_dim = c.head_dim;
      fused_rope.positions = rope.positions;
      fused_rope.inv_freq = rope.inv_freq;
      fused_rope.attention_scaling = rope.attention_scaling;
      fused_rope.slot_mapping = rope.slot_mapping;
      fused_rope.k_cache = reinterpret_cast<__nv_bfloat16*>(rope.k_cache);
      fused_rope.v_cache = reinterpret_cast<__nv_bfloat16*>(rope.v_cache);
      KILN_RETURN_IF_ERROR(norm_gemv(li == 0 ? nullptr : x, L.input_norm, L.qkv, L.qkv_bias, qkv,
                                     qkv_width, false, &fused_rope));
    } else {
      KILN_CUDA_RETURN_IF_ERROR(kernels::RmsNorm(norm, stream_));
      KILN_RETURN_IF_ERROR(
          gemm_.Run(gt, gt, normed, L.qkv, L.qkv_bias, qkv, n, qkv_width, h, stream_));
    }
    // Decode steps of more rows (bf16, no q/k norms, rotate-half): RoPE and the KV-cache write in
    // the attention kernel (kernels::PagedAttentionFusedRope) instead of a launch of their own.
    const bool rope_in_attention =
        !fuse_rope && dtype_ == ElemType::kBF16 && L.q_norm == nullptr && L.k_norm == nullptr &&
        !c.rope_interleaved &&
        kernels::PagedAttentionFusesRope(c.num_attention_heads, c.num_key_value_heads, c.head_dim,
                                         shape.max_seqlen_q);
    if (!fuse_rope && !rope_in_attention) {
      KILN_CUDA_RETURN_IF_ERROR(kernels::RopeKvCache(rope, stream_));
    }

    kernels::PagedAttentionParams<T> at;
    at.q = qkv;
    at.q_stride = qkv_width;
    at.k_cache = static_cast<const T*>(L.k_cache);
    at.v_cache = static_cast<const T*>(L.v_cache);
    at.out = attn_.as<T>();
    at.out_stride = q;
    at.cu_seqlens_q = Meta<int32_t>(shape.meta.cu_seqlens_q);
    at.seq_lens = Meta<int32_t>(shape.meta.seq_lens);
    at.block_tables = Meta<int32_t>(shape.meta.block_tables);
    at.max_blocks_per_seq = shape.blocks_per_seq;
    at.num_seqs = shape.num_seqs;
    at.num_tokens = n;
    at.num_heads = c.num_attention_heads;
    at.num_kv_heads = c.num_key_value_heads;
    at.head_dim = c.head_dim;
    at.block_size = options_.block_size;
    at.max_seqlen_q = shape.max_seqlen_q;
    at.max_seq_len = shape.max_seq_len;
    at.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    at.workspace = attn_workspace_.as<float>();
    at.workspace_size_bytes = attn_workspace_.size_bytes();
    if (rope_in_attention) {
      at.rope.enabled = true;
      at.rope.positions = rope.positions;
      at.rope.inv_freq = rope.inv_freq;
      at.rope.attention_scaling = rope.attention_scaling;
      at.rope.slot_mapping = rope.slot_mapping;
      at.rope.k_new = rope.k;
      at.rope.v_new = rope.v;
      at.rope.kv_stride = qkv_width;
      at.rope.k_cache_out = static_cast<T*>(L.k_cache);
      at.rope.v_cache_out = static_cast<T*>(L.v_cache);
    }
    KILN_CUDA_RETURN_IF_ERROR(kernels::PagedAttention(at, stream_));

    KILN_RETURN_IF_ERROR(gemm_.Run(gt, gt, attn_.get(), L.o, nullptr, x, n, h, q, stream_));

    if (fuse_norm) {
      KILN_RETURN_IF_ERROR(
          norm_gemv(x, L.post_norm, L.gate_up, nullptr, act_.get(), 2 * inter, true, nullptr));
    } else {
      norm.x = x;
      norm.residual = residual;
      norm.weight = static_cast<const T*>(L.post_norm);
      KILN_CUDA_RETURN_IF_ERROR(kernels::RmsNorm(norm, stream_));
      KILN_RETURN_IF_ERROR(
          gemm_.Run(gt, gt, normed, L.gate_up, nullptr, gate_up_.get(), n, 2 * inter, h, stream_));
      kernels::SiluMulParams<T> silu;
      silu.gate_up = gate_up_.as<T>();
      silu.out = act_.as<T>();
      silu.num_tokens = n;
      silu.intermediate_size = inter;
      KILN_CUDA_RETURN_IF_ERROR(kernels::SiluMul(silu, stream_));
    }
    KILN_RETURN_IF_ERROR(gemm_.Run(gt, gt, act_.get(), L.down, nullptr, x, n, h, inter, stream_));
  }
  kernels::RmsNormParams<T> final_norm;
  final_norm.x = x;
  final_norm.residual = residual;
  final_norm.weight = static_cast<const T*>(final_norm_);
  final_norm.out = normed;
  final_norm.num_tokens = n;
  final_norm.hidden_size = h;
  final_norm.eps = eps;
  KILN_CUDA_RETURN_IF_ERROR(kernels::RmsNorm(final_norm, stream_));

  if (shape.num_logits > 0) {
    const void* lm_in = normed;
    if (!shape.logits_identity) {
      KILN_CUDA_RETURN_IF_ERROR(cuda::LaunchGatherRows(
          normed, Meta<int32_t>(shape.meta.logits_indices), shape.num_logits, h, dtype_,
          lm_in_.get(), stream_));
      lm_in = lm_in_.get();
    }
    KILN_RETURN_IF_ERROR(gemm_.Run(gt, CUDA_R_32F, lm_in, lm_head_, nullptr, logits_.get(),
                                   shape.num_logits, c.vocab_size, h, stream_));
  }
  if (shape.num_hidden > 0) {
    KILN_CUDA_RETURN_IF_ERROR(cuda::LaunchGatherRowsToFloat(
        normed, Meta<int32_t>(shape.meta.hidden_indices), shape.num_hidden, h, dtype_,
        hidden_out_.as<float>(), stream_));
  }
  return Status::Ok();
}

Status CudaBackend::GetLogits(std::vector<float>* logits) {
  if (!has_forward_) return Status::FailedPrecondition("GetLogits before a successful Forward");
  logits->resize(static_cast<size_t>(last_num_logits_) * config_.vocab_size);
  KILN_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(logits->data(), logits_.get(),
                                            logits->size() * sizeof(float),
                                            cudaMemcpyDeviceToHost, stream_));
  KILN_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return Status::Ok();
}

Status CudaBackend::GetHidden(std::vector<float>* hidden) {
  if (!has_forward_) return Status::FailedPrecondition("GetHidden before a successful Forward");
  hidden->resize(static_cast<size_t>(last_num_hidden_) * config_.hidden_size);
  KILN_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(hidden->data(), hidden_out_.get(),
                                            hidden->size() * sizeof(float),
                                            cudaMemcpyDeviceToHost, stream_));
  KILN_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return Status::Ok();
}

Status CudaBackend::SampleAsync(std::span<const SamplingRow> rows) {
  if (!has_forward_) return Status::FailedPrecondition("Sample before a successful Forward");
  if (static_cast<int>(rows.size()) != last_num_logits_) {
    return Status::InvalidArgument("Sample got " + std::to_string(rows.size()) +
                                   " rows for " + std::to_string(last_num_logits_) +
                                   " logits rows");
  }
  cudaEvent_t begin = options_.record_device_timeline ? timeline_.OpenPiece() : nullptr;
  KILN_RETURN_IF_ERROR(sampler_.Launch(logits_.as<float>(), rows, stream_, begin));
  if (options_.record_device_timeline) timeline_.End(stream_);
  return Status::Ok();
}

Status CudaBackend::WaitSample(std::vector<SampleResult>* results) {
  KILN_RETURN_IF_ERROR(sampler_.Wait(results));
  if (options_.record_device_timeline) return CollectTimeline(false, false, nullptr);
  return Status::Ok();
}

}  // namespace

Status CudaBackendOptions::Validate() const {
  if (device_id < 0) return Status::InvalidArgument("device_id must be >= 0");
  if (block_size < 16 || (block_size & (block_size - 1)) != 0) {
    return Status::InvalidArgument("block_size must be a power of two >= 16, got " +
                                   std::to_string(block_size));
  }
  if (num_kv_blocks < 0) return Status::InvalidArgument("num_kv_blocks must be >= 0");
  if (!(gpu_memory_utilization > 0.0 && gpu_memory_utilization <= 1.0)) {
    return Status::InvalidArgument("gpu_memory_utilization must be in (0, 1]");
  }
  if (max_num_batched_tokens < 1) {
    return Status::InvalidArgument("max_num_batched_tokens must be >= 1");
  }
  if (max_num_seqs < 1) return Status::InvalidArgument("max_num_seqs must be >= 1");
  if (max_model_len < 0) return Status::InvalidArgument("max_model_len must be >= 0");
  if (dtype != "bfloat16" && dtype != "float32") {
    return Status::InvalidArgument("dtype must be bfloat16 or float32, got '" + dtype + "'");
  }
  return Status::Ok();
}

StatusOr<DeviceTimeline> ReadDeviceTimeline(Backend* backend, bool reset) {
  auto* cuda = dynamic_cast<CudaBackend*>(backend);
  if (cuda == nullptr) return Status::FailedPrecondition("not a CUDA backend");
  DeviceTimeline t;
  KILN_RETURN_IF_ERROR(cuda->CollectTimeline(true, reset, &t));
  return t;
}

bool CudaDeviceAvailable() {
  int n = 0;
  const bool ok = cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
  cudaGetLastError();
  return ok;
}

StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(std::shared_ptr<const LoadedModel> model,
                                                     const CudaBackendOptions& options) {
  if (model == nullptr) return Status::InvalidArgument("CreateCudaBackend: null model");
  auto backend = std::make_unique<CudaBackend>(std::move(model), options);
  KILN_RETURN_IF_ERROR(backend->Init());
  return std::unique_ptr<Backend>(std::move(backend));
}

}  // namespace kiln
