#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/kv_transfer.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <memory>
#include <utility>
#include <vector>

#include "backend/cuda/cuda_ops.h"
#include "backend/cuda/cuda_util.h"
#include "backend/cuda/decode_graphs.h"
#include "backend/cuda/deferred_tokens.h"
#include "backend/cuda/device_memory.h"
#include "backend/cuda/device_timeline.h"
#include "backend/cuda/device_weights.h"
#include "backend/cuda/gemm.h"
#include "backend/cuda/gpu_sampler.h"
#include "backend/cuda/step_metadata.h"
#include "common/logging.h"
#include "model/llama.h"

namespace kiln {
namespace {

using cuda::ElemType;

constexpr size_t kGraphReserveBytes = size_t{512} << 20;  // graphs, cuBLAS/cub lazies, slack

// indices == [0, n).
bool IsIdentity(const std::vector<int32_t>& indices, int n) {
  if (static_cast<int>(indices.size()) != n) return false;
  for (int i = 0; i < n; ++i) {
    if (indices[static_cast<size_t>(i)] != i) return false;
  }
  return true;
}

class CudaBackend final : public Backend {
 public:
  CudaBackend(std::shared_ptr<const LoadedModel> loaded, const CudaBackendOptions& options)
      : loaded_(std::move(loaded)), config_(loaded_->config), options_(options) {}
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  Status Init();

  const ModelConfig& config() const override { return config_; }
  int block_size() const override { return options_.block_size; }
  int64_t num_kv_blocks() const override { return kv_.num_blocks(); }
  int max_logits_rows() const override { return max_logits_; }
  Status Forward(const ForwardBatch& batch) override;
  Status SampleAsync(std::span<const SamplingRow> rows) override;
  bool SampleReady() override { return sampler_.Ready(); }
  Status WaitSample(std::vector<SampleResult>* results) override;
  Status GetLogits(std::vector<float>* logits) override;
  Status GetHidden(std::vector<float>* hidden) override;
  // KV block transfers: cuda/kv_transfer.h (a pinned host pool, a copy stream, events).
  int64_t kv_block_record_bytes() const override {
    return static_cast<int64_t>(
        cuda::KvPool::BytesPerBlock(model_->shape, dtype_, options_.block_size));
  }
  std::string kv_record_layout() const override {
    return std::string("cuda-") + (dtype_ == ElemType::kF32 ? "f32" : "bf16") +
           " layers=" + std::to_string(model_->shape.num_layers) +
           " kv_size=" + std::to_string(model_->shape.kv_size()) +
           " block=" + std::to_string(options_.block_size) + " [layer][K,V][block][head][dim]";
  }
  Status AllocateHostKvPool(int64_t num_records) override {
    std::vector<void*> halves;
    for (int l = 0; l < model_->shape.num_layers; ++l) {
      halves.push_back(kv_.k(l));
      halves.push_back(kv_.v(l));
    }
    const int64_t run = kv_block_record_bytes() / (2 * int64_t{model_->shape.num_layers});
    return kv_transfer_.Init(halves, run, kv_.num_blocks(), stream_, num_records);
  }
  uint8_t* host_kv_pool() override { return kv_transfer_.host_pool(); }
  StatusOr<uint64_t> CopyKvBlocks(KvCopyDirection direction,
                                  std::span<const KvBlockCopy> copies) override {
    return kv_transfer_.Copy(direction, copies);
  }
  StatusOr<bool> KvCopyDone(uint64_t ticket, double* seconds) override {
    return kv_transfer_.Done(ticket, seconds);
  }

  Status CollectTimeline(bool wait, bool reset, DeviceTimeline* out) {
    return timeline_.Collect(stream_, wait, reset, out);
  }

 private:
  Status ProfileAndPlanKv();
  Status ValidateBatch(const ForwardBatch& batch) const;
  // One run of the model (eager, or being captured into a graph).
  Status RunModel(const cuda::RunShape& shape);

  std::shared_ptr<const LoadedModel> loaded_;
  std::shared_ptr<const LlamaModel> model_;
  ModelConfig config_;
  CudaBackendOptions options_;
  ElemType dtype_ = ElemType::kBF16;
  cudaStream_t stream_ = nullptr;
  cuda::Gemm gemm_;
  cuda::DeviceWeights weights_;
  cuda::DeviceActivations act_;
  cuda::KvPool kv_;
  cuda::StepMetadata meta_;
  cuda::DecodeGraphs graphs_;
  cuda::GpuSampler sampler_;
  cuda::KvTransfer kv_transfer_;  // after kv_: destroyed first (its copy stream drains)
  // Device timeline (options_.record_device_timeline): events around each Forward / SampleAsync.
  cuda::DeviceTimelineRecorder timeline_;

  int max_tokens_ = 0;
  int max_seqs_ = 0;
  int max_logits_ = 0;
  int max_blocks_per_seq_ = 0;  // block-table row stride on the device

  // Last Forward.
  int last_num_logits_ = 0;
  int last_num_hidden_ = 0;
  bool has_forward_ = false;
};

CudaBackend::~CudaBackend() {
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
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
  KILN_ASSIGN_OR_RETURN(model_, LlamaModel::Build(loaded_));
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
  KILN_RETURN_IF_ERROR(gemm_.Init());

  const int max_model_len =
      options_.max_model_len > 0 ? options_.max_model_len : config_.max_position_embeddings;
  max_tokens_ = options_.max_num_batched_tokens;
  max_seqs_ = options_.max_num_seqs;
  max_logits_ = std::max(max_seqs_, 256);
  max_blocks_per_seq_ =
      (std::max(max_model_len, max_tokens_) + options_.block_size - 1) / options_.block_size;

  cuda::LinearStorage storage = cuda::LinearStorage::kAsStored;
  if (options_.quantization == "none") {
    storage = cuda::LinearStorage::kDense;
  } else if (options_.quantization == "fp8") {
    storage = options_.quantization_scale == "per-tensor" ? cuda::LinearStorage::kFp8PerTensor
                                                          : cuda::LinearStorage::kFp8PerChannel;
  }
  if (dtype_ == ElemType::kF32 && storage != cuda::LinearStorage::kDense &&
      (storage != cuda::LinearStorage::kAsStored || !model_->quant.dense())) {
    return Status::InvalidArgument(
        "FP8 weights run with bfloat16 activations: use --dtype bfloat16 (or auto) with FP8");
  }
  KILN_RETURN_IF_ERROR(weights_.Upload(*model_, dtype_, storage, stream_));
  KILN_RETURN_IF_ERROR(act_.Allocate(model_->shape, dtype_, max_tokens_, max_seqs_, max_logits_,
                                     weights_.has_fp8()));
  KILN_RETURN_IF_ERROR(meta_.Init(max_tokens_, max_seqs_, max_logits_, max_blocks_per_seq_));
  KILN_RETURN_IF_ERROR(sampler_.Init(max_logits_, model_->shape.vocab_size));
  if (options_.num_kv_blocks > 0) {
    KILN_RETURN_IF_ERROR(
        kv_.Allocate(model_->shape, dtype_, options_.block_size, options_.num_kv_blocks));
  } else {
    KILN_RETURN_IF_ERROR(ProfileAndPlanKv());
  }
  KILN_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  KILN_LOG(INFO) << "cuda backend: " << kv_.num_blocks() << " KV blocks of "
                 << options_.block_size << " tokens, weights " << (weights_.size_bytes() >> 20)
                 << " MiB, dtype " << options_.dtype << ", linear weights "
                 << (options_.quantization == "auto" ? model_->quant.Describe()
                                                     : options_.quantization);
  return Status::Ok();
}

Status CudaBackend::ProfileAndPlanKv() {
  // A throw-away cache big enough for one max_tokens prefill, then one profiling forward.
  const int bs = options_.block_size;
  const int64_t probe_blocks = (max_tokens_ + bs - 1) / bs;
  KILN_RETURN_IF_ERROR(kv_.Allocate(model_->shape, dtype_, bs, probe_blocks));
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
  const double per_block = cuda::KvPool::BytesPerBlock(model_->shape, dtype_, bs);
  const double reserve = options_.enable_cuda_graphs ? kGraphReserveBytes : kGraphReserveBytes / 2;
  const int64_t blocks = static_cast<int64_t>((budget - used_without_kv - reserve) / per_block);
  if (blocks < 1) {
    return Status::ResourceExhausted(
        "no GPU memory left for the KV cache: weights+activations use " +
        std::to_string(static_cast<int64_t>(used_without_kv) >> 20) + " MiB of a " +
        std::to_string(static_cast<int64_t>(budget) >> 20) +
        " MiB budget (raise gpu_memory_utilization or lower max_num_batched_tokens)");
  }
  kv_.Reset();
  return kv_.Allocate(model_->shape, dtype_, bs, blocks);
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
  const int64_t num_slots = kv_.num_blocks() * options_.block_size;
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
      if (blk < 0 || blk >= kv_.num_blocks()) {
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

Status CudaBackend::Forward(const ForwardBatch& batch) {
  has_forward_ = false;
  KILN_RETURN_IF_ERROR(ValidateBatch(batch));
  const int s = batch.num_seqs();
  int bucket = 0;
  if (options_.enable_cuda_graphs && batch.is_decode_only && batch.num_tokens() == s &&
      batch.hidden_indices.empty() && IsIdentity(batch.logits_indices, s)) {
    // (logits row i is token i, as a graph's lm_head assumes: RunShape::logits_identity)
    bucket = cuda::DecodeGraphs::Bucket(s, max_seqs_, max_tokens_);
  }
  cuda::RunShape shape;
  KILN_RETURN_IF_ERROR(meta_.Pack(batch, bucket, max_blocks_per_seq_, &shape));
  if (options_.record_device_timeline) timeline_.Begin(stream_);
  KILN_RETURN_IF_ERROR(meta_.Upload(shape, stream_));
  if (!batch.deferred_tokens.empty()) {  // ids the last SampleAsync left on the device
    KILN_CUDA_RETURN_IF_ERROR(cuda::LaunchFillDeferredTokens(
        meta_.at<int32_t>(shape.meta.token_ids), meta_.at<int32_t>(shape.meta.deferred),
        static_cast<int>(batch.deferred_tokens.size()), sampler_.device_token_ids(),
        config_.vocab_size, stream_));
  }
  if (bucket > 0) {
    KILN_RETURN_IF_ERROR(graphs_.Run(shape, max_blocks_per_seq_ * options_.block_size, stream_,
                                     [this](const cuda::RunShape& s) { return RunModel(s); }));
  } else {
    KILN_RETURN_IF_ERROR(RunModel(shape));
  }
  if (options_.record_device_timeline) timeline_.End(stream_);
  last_num_logits_ = static_cast<int>(batch.logits_indices.size());
  last_num_hidden_ = static_cast<int>(batch.hidden_indices.size());
  has_forward_ = true;
  return Status::Ok();
}

Status CudaBackend::RunModel(const cuda::RunShape& shape) {
  cuda::CudaOpsContext ctx;
  ctx.shape = &model_->shape;
  ctx.dtype = dtype_;
  ctx.block_size = options_.block_size;
  ctx.weights = &weights_;
  ctx.act = &act_;
  ctx.kv = &kv_;
  ctx.meta = &meta_;
  ctx.gemm = &gemm_;
  ctx.stream = stream_;
  cuda::CudaOps ops(ctx, shape);
  return LlamaForward(*model_, ops);
}

Status CudaBackend::GetLogits(std::vector<float>* logits) {
  if (!has_forward_) return Status::FailedPrecondition("GetLogits before a successful Forward");
  logits->resize(static_cast<size_t>(last_num_logits_) * config_.vocab_size);
  KILN_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(logits->data(), act_.logits.get(),
                                            logits->size() * sizeof(float),
                                            cudaMemcpyDeviceToHost, stream_));
  KILN_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return Status::Ok();
}

Status CudaBackend::GetHidden(std::vector<float>* hidden) {
  if (!has_forward_) return Status::FailedPrecondition("GetHidden before a successful Forward");
  hidden->resize(static_cast<size_t>(last_num_hidden_) * config_.hidden_size);
  KILN_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(hidden->data(), act_.hidden_out.get(),
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
  KILN_RETURN_IF_ERROR(sampler_.Launch(act_.logits.as<float>(), rows, stream_, begin));
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
    return Status::InvalidArgument("the CUDA backend computes in bfloat16 or float32, got dtype '" +
                                   dtype + "' (float16 checkpoints load fine with dtype auto or "
                                   "bfloat16)");
  }
  if (quantization != "auto" && quantization != "none" && quantization != "fp8") {
    return Status::InvalidArgument("quantization must be auto, none or fp8, got '" +
                                   quantization + "'");
  }
  if (quantization_scale != "per-channel" && quantization_scale != "per-tensor") {
    return Status::InvalidArgument("quantization_scale must be per-channel or per-tensor, got '" +
                                   quantization_scale + "'");
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
