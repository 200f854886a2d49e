#include "backend/cuda/device_weights.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "common/logging.h"
#include "kernels/fp8.h"

namespace kiln::cuda {
namespace {

constexpr size_t kStagingBytes = size_t{64} << 20;

size_t AlignUp(size_t x, size_t a = 256) { return (x + a - 1) / a * a; }

}  // namespace

Status DeviceWeights::Materialize(const Tensor& tensor, void* dst, cudaStream_t stream) {
  const int64_t count = tensor.numel();
  if (tensor.is_dummy()) {
    KILN_CUDA_RETURN_IF_ERROR(LaunchFillDummy(dst, dtype_, count, tensor.dummy_seed,
                                              tensor.dummy_fill == Tensor::DummyFill::kOnes,
                                              stream));
    return Status::Ok();
  }
  SrcType src_type;
  switch (tensor.dtype) {
    case DType::kF32:
      src_type = SrcType::kF32;
      break;
    case DType::kF16:
      src_type = SrcType::kF16;
      break;
    case DType::kBF16:
      src_type = SrcType::kBF16;
      break;
    default:
      return Status::InvalidArgument("CUDA backend cannot upload a dense tensor of dtype " +
                                     std::string(DTypeName(tensor.dtype)));
  }
  if (tensor.data == nullptr) return Status::Internal("tensor without data");
  const size_t src_elem = DTypeSize(tensor.dtype);
  if (tensor.size_bytes < static_cast<size_t>(count) * src_elem) {
    return Status::DataLoss("tensor holds fewer bytes than its shape needs");
  }
  if (staging_.get() == nullptr) KILN_RETURN_IF_ERROR(staging_.Allocate(kStagingBytes));
  const int64_t chunk = static_cast<int64_t>(kStagingBytes / src_elem);
  const size_t elem = ElemSize(dtype_);
  for (int64_t begin = 0; begin < count; begin += chunk) {
    const int64_t n = std::min(chunk, count - begin);
    KILN_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
        staging_.get(), static_cast<const char*>(tensor.data) + begin * src_elem, n * src_elem,
        cudaMemcpyHostToDevice, stream));
    KILN_CUDA_RETURN_IF_ERROR(LaunchConvert(staging_.get(), src_type,
                                            static_cast<char*>(dst) + begin * elem, dtype_, n,
                                            stream));
  }
  return Status::Ok();  // stream order keeps the next chunk's copy after this conversion
}

Status DeviceWeights::UploadDense(const LinearWeight& l, void* dst, cudaStream_t stream) {
  const size_t elem = ElemSize(dtype_);
  int64_t row = 0;
  for (const LinearWeight::Part& p : l.parts) {
    char* part_dst = static_cast<char*>(dst) + row * l.in_features * elem;
    if (l.quant.dense()) {
      KILN_RETURN_IF_ERROR(Materialize(p.weight, part_dst, stream));
    } else {
      // Stored quantized: value × scale on the host (exact in float32), then up as float32.
      std::vector<float> rows(static_cast<size_t>(p.rows() * l.in_features));
      l.DequantizeRows(row, p.rows(), rows.data());
      Tensor dense;
      dense.dtype = DType::kF32;
      dense.shape = {p.rows(), l.in_features};
      dense.data = rows.data();
      dense.size_bytes = rows.size() * sizeof(float);
      KILN_RETURN_IF_ERROR(Materialize(dense, part_dst, stream));
      KILN_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));  // `rows` dies here
    }
    row += p.rows();
  }
  return Status::Ok();
}

Status DeviceWeights::UploadFp8(const LinearWeight& l, bool per_tensor, const DeviceLinear& d,
                                cudaStream_t stream) {
  uint8_t* q = static_cast<uint8_t*>(const_cast<void*>(d.w));
  float* scale = const_cast<float*>(d.scale);
  const bool stored = l.quant.format == WeightFormat::kFp8E4M3 &&
                      (l.quant.granularity == ScaleGranularity::kPerTensor ||
                       l.quant.granularity == ScaleGranularity::kPerChannel);
  if (stored) {
    // Byte for byte, scales expanded to one per row.
    std::vector<float> row_scales;
    row_scales.reserve(static_cast<size_t>(l.out_features));
    int64_t row = 0;
    for (const LinearWeight::Part& p : l.parts) {
      const size_t bytes = static_cast<size_t>(p.rows() * l.in_features);
      if (p.weight.data == nullptr || p.weight.size_bytes < bytes) {
        return Status::DataLoss(l.name + ": FP8 part holds fewer bytes than its shape needs");
      }
      KILN_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(q + row * l.in_features, p.weight.data, bytes,
                                                cudaMemcpyHostToDevice, stream));
      std::vector<float> s(static_cast<size_t>(std::max<int64_t>(p.scale.numel(), 1)));
      Tensor scalar = p.scale;
      if (scalar.shape.empty()) scalar.shape = {1};
      scalar.ToFloat(0, scalar.numel(), s.data());
      for (int64_t r = 0; r < p.rows(); ++r) {
        row_scales.push_back(l.quant.granularity == ScaleGranularity::kPerTensor
                                 ? s[0]
                                 : s[static_cast<size_t>(r)]);
      }
      row += p.rows();
    }
    KILN_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(scale, row_scales.data(),
                                              row_scales.size() * sizeof(float),
                                              cudaMemcpyHostToDevice, stream));
    KILN_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));  // host vectors die here
    return Status::Ok();
  }
  // Dense (or block-FP8) → dense rows on the device → FP8 per row / per tensor.
  const size_t dense_bytes = static_cast<size_t>(l.out_features * l.in_features) * ElemSize(dtype_);
  if (dense_tmp_.size_bytes() < dense_bytes) KILN_RETURN_IF_ERROR(dense_tmp_.Allocate(dense_bytes));
  if (scratch_.get() == nullptr) KILN_RETURN_IF_ERROR(scratch_.Allocate(256));
  KILN_RETURN_IF_ERROR(UploadDense(l, dense_tmp_.get(), stream));
  // Part by part (a fused q|k|v gets one per-tensor scale per part, as the CPU twin and
  // checkpoints have it).
  int64_t row = 0;
  for (const LinearWeight::Part& p : l.parts) {
    kernels::QuantizeFp8Params qp;
    qp.x = static_cast<const char*>(dense_tmp_.get()) + row * l.in_features * ElemSize(dtype_);
    qp.x_is_f32 = dtype_ == ElemType::kF32;
    qp.out = q + row * l.in_features;
    qp.scales = scale + row;
    qp.rows = p.rows();
    qp.cols = l.in_features;
    qp.per_tensor = per_tensor;
    qp.amax_workspace = scratch_.as<float>();
    KILN_CUDA_RETURN_IF_ERROR(kernels::QuantizeFp8(qp, stream));
    if (per_tensor) {  // the kernel wrote one scale: repeat it for every row of the part
      KILN_CUDA_RETURN_IF_ERROR(LaunchRepeatScalar(scale + row, p.rows(), stream));
    }
    row += p.rows();
  }
  return Status::Ok();
}

Status DeviceWeights::Upload(const LlamaModel& model, ElemType dtype, LinearStorage storage,
                             cudaStream_t stream) {
  dtype_ = dtype;
  const size_t elem = ElemSize(dtype);
  // Arena plan: (destination, bytes) of each piece, in order.
  std::vector<std::pair<const void**, size_t>> pieces;
  pieces.push_back({&embed_, static_cast<size_t>(model.embed_tokens.numel()) * elem});
  linears_.assign(static_cast<size_t>(model.num_linears()), DeviceLinear{});
  norms_.assign(static_cast<size_t>(model.num_norms()), nullptr);
  std::vector<bool> per_tensor(static_cast<size_t>(model.num_linears()), false);
  int num_requantized = 0, num_kept_dense = 0, num_static_inputs = 0;
  for (int id = 0; id < model.num_linears(); ++id) {
    const LinearWeight& l = model.linear(id);
    const bool is_lm_head = &l == &model.lm_head;
    DeviceLinear& d = linears_[static_cast<size_t>(id)];
    d.in_features = l.in_features;
    d.out_features = l.out_features;
    if (!l.quant.dense() && l.quant.format != WeightFormat::kFp8E4M3) {
      return Status::InvalidArgument(l.name + ": the CUDA backend holds dense or FP8 weights, not " +
                                     l.quant.Describe());
    }
    const bool stored_fp8 = l.quant.format == WeightFormat::kFp8E4M3;
    switch (storage) {
      case LinearStorage::kAsStored:
        d.fp8 = stored_fp8;
        break;
      case LinearStorage::kDense:
        d.fp8 = false;
        break;
      case LinearStorage::kFp8PerChannel:
      case LinearStorage::kFp8PerTensor:
        d.fp8 = !is_lm_head;
        break;
    }
    if (d.fp8 && l.in_features % 16 != 0) {
      d.fp8 = false;  // the FP8 kernels need 16-byte rows: this projection runs dense
      ++num_kept_dense;
    }
    per_tensor[static_cast<size_t>(id)] = storage == LinearStorage::kFp8PerTensor;
    if (d.fp8 && stored_fp8 && l.quant.granularity == ScaleGranularity::kPerBlock) {
      ++num_requantized;
    }
    if (d.fp8 && l.has_input_scale()) ++num_static_inputs;
    if (is_lm_head && model.tied_lm_head) continue;  // shares embed_
    const size_t w_bytes = static_cast<size_t>(l.out_features * l.in_features) * (d.fp8 ? 1 : elem);
    pieces.push_back({&d.w, w_bytes});
    if (d.fp8) {
      pieces.push_back({reinterpret_cast<const void**>(&d.scale),
                        static_cast<size_t>(l.out_features) * sizeof(float)});
    }
    if (l.has_bias()) pieces.push_back({&d.bias, static_cast<size_t>(l.out_features) * elem});
  }
  for (int id = 0; id < model.num_norms(); ++id) {
    pieces.push_back({&norms_[static_cast<size_t>(id)],
                      static_cast<size_t>(model.norm(id).weight.numel()) * elem});
  }
  size_t total = 0;
  for (auto& [ptr, bytes] : pieces) total += AlignUp(bytes);
  KILN_RETURN_IF_ERROR(arena_.Allocate(total).WithContext("allocating weights"));
  size_t off = 0;
  for (auto& [ptr, bytes] : pieces) {
    *ptr = static_cast<char*>(arena_.get()) + off;
    off += AlignUp(bytes);
  }
  if (model.tied_lm_head) linears_[static_cast<size_t>(model.lm_head.id)].w = embed_;
  if (num_kept_dense > 0) {
    KILN_LOG(INFO) << "cuda weights: " << num_kept_dense
                   << " projections kept in the compute dtype (FP8 needs in_features % 16 == 0)";
  }
  if (num_requantized > 0) {
    KILN_LOG(INFO) << "cuda weights: " << num_requantized
                   << " block-FP8 projections re-quantized per output channel";
  }
  if (num_static_inputs > 0) {
    KILN_LOG(WARNING) << "cuda weights: the checkpoint's static input scales (" << num_static_inputs
                      << " projections) are not used: CUDA quantizes activations per token "
                         "(dynamic), the CPU backend uses the static scales";
  }

  KILN_RETURN_IF_ERROR(Materialize(model.embed_tokens, const_cast<void*>(embed_), stream));
  for (int id = 0; id < model.num_linears(); ++id) {
    const LinearWeight& l = model.linear(id);
    if (&l == &model.lm_head && model.tied_lm_head) continue;
    const DeviceLinear& d = linears_[static_cast<size_t>(id)];
    if (d.fp8) {
      KILN_RETURN_IF_ERROR(
          UploadFp8(l, per_tensor[static_cast<size_t>(id)], d, stream).WithContext(l.name));
    } else {
      KILN_RETURN_IF_ERROR(UploadDense(l, const_cast<void*>(d.w), stream).WithContext(l.name));
    }
    if (d.bias != nullptr) {
      int64_t row = 0;
      for (const LinearWeight::Part& p : l.parts) {
        void* bias_dst = static_cast<char*>(const_cast<void*>(d.bias)) + row * elem;
        if (p.bias.defined()) {
          KILN_RETURN_IF_ERROR(Materialize(p.bias, bias_dst, stream));
        } else {
          KILN_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(bias_dst, 0, p.rows() * elem, stream));
        }
        row += p.rows();
      }
    }
  }
  for (int id = 0; id < model.num_norms(); ++id) {
    KILN_RETURN_IF_ERROR(Materialize(model.norm(id).weight,
                                     const_cast<void*>(norms_[static_cast<size_t>(id)]), stream));
  }
  const std::vector<float>& inv = model.rope.inv_freq;
  attention_scaling_ = model.rope.attention_scaling;
  KILN_RETURN_IF_ERROR(inv_freq_.Allocate(inv.size() * sizeof(float)));
  KILN_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(inv_freq_.get(), inv.data(), inv.size() * sizeof(float),
                                            cudaMemcpyHostToDevice, stream));
  KILN_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  staging_.Reset();
  dense_tmp_.Reset();
  scratch_.Reset();
  return Status::Ok();
}

}  // namespace kiln::cuda
