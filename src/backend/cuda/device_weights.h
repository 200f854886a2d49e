// DeviceWeights: every weight of a LlamaModel on one GPU, in one arena, in the backend's compute
// dtype (bf16, or float32 in the exact-parity mode): the embedding table, each LinearWeight as
// one contiguous [out_features, in_features] matrix (its parts stacked: q|k|v, gate|up) with its
// bias, each norm vector, and the RoPE inverse frequencies. Looked up by the ids the model layer
// assigns (LinearWeight::id, NormWeight::id). Dummy tensors are generated on the device with
// DummyWeightValue (identical to the CPU backend's values); real tensors go up through a staging
// buffer and are converted on the device.
//
// Not responsible for: which kernel reads a weight (cuda_ops), the KV cache (kv_pool).
// Thread-safety: built once by the backend's thread, then read-only.
#pragma once

#include <cuda_runtime.h>

#include <vector>

#include "backend/cuda/cuda_util.h"
#include "backend/cuda/device_fill.h"
#include "kiln/status.h"
#include "model/llama.h"

namespace kiln::cuda {

struct DeviceLinear {
  const void* w = nullptr;     // [out_features, in_features]: ElemType, or E4M3 bytes (fp8)
  const void* bias = nullptr;  // [out_features] ElemType, or nullptr
  bool fp8 = false;            // w is E4M3 with one float32 scale per output row
  const float* scale = nullptr;  // [out_features] (fp8)
  int64_t in_features = 0;
  int64_t out_features = 0;
};

// How the layers' projections are held on the device (lm_head and the embedding always dense).
enum class LinearStorage {
  kAsStored,        // as the checkpoint stores them (dense, or FP8; block-FP8 → FP8 per channel)
  kDense,           // dense in the compute dtype (stored FP8 is dequantized)
  kFp8PerChannel,   // FP8 E4M3, one scale per output row (dense weights quantized on the device)
  kFp8PerTensor,    // FP8 E4M3, one scale per weight (repeated per row)
};

class DeviceWeights final {
 public:
  DeviceWeights() = default;
  DeviceWeights(const DeviceWeights&) = delete;
  DeviceWeights& operator=(const DeviceWeights&) = delete;

  // Uploads `model` in `dtype` on `stream` and waits for it, the projections held as `storage`
  // says. FP8 projections keep one float32 scale per output row: a per-tensor scale is repeated,
  // a stored FP8 per-tensor / per-channel checkpoint goes up byte for byte, a dense weight is
  // quantized on the device (kernels::QuantizeFp8), a block-FP8 checkpoint is dequantized on the
  // host and re-quantized per channel. Errors: out of memory, formats the device path cannot hold
  // (int8 / int4: named).
  Status Upload(const LlamaModel& model, ElemType dtype, LinearStorage storage,
                cudaStream_t stream);

  const void* embed() const { return embed_; }
  const DeviceLinear& linear(const LinearWeight& w) const {
    return linears_[static_cast<size_t>(w.id)];
  }
  const void* norm(const NormWeight& n) const {
    return n.defined() ? norms_[static_cast<size_t>(n.id)] : nullptr;
  }
  const float* inv_freq() const { return inv_freq_.as<float>(); }
  float attention_scaling() const { return attention_scaling_; }
  size_t size_bytes() const { return arena_.size_bytes(); }
  bool has_fp8() const {
    for (const DeviceLinear& l : linears_) {
      if (l.fp8) return true;
    }
    return false;
  }

 private:
  Status Materialize(const Tensor& tensor, void* dst, cudaStream_t stream);
  // The dense rows of one linear layer into dst ([out, in] of dtype_): materialized, or
  // dequantized on the host when stored quantized.
  Status UploadDense(const LinearWeight& l, void* dst, cudaStream_t stream);
  // The FP8 rows and per-row scales of one linear layer into d.
  Status UploadFp8(const LinearWeight& l, bool per_tensor, const DeviceLinear& d,
                   cudaStream_t stream);

  ElemType dtype_ = ElemType::kBF16;
  DeviceBuffer arena_;
  DeviceBuffer staging_;  // host-tensor upload chunks (freed after Upload)
  DeviceBuffer dense_tmp_;  // one dense linear layer before quantization (freed after Upload)
  DeviceBuffer scratch_;    // per-tensor amax, stored scales (freed after Upload)
  DeviceBuffer inv_freq_;
  float attention_scaling_ = 1.0f;
  const void* embed_ = nullptr;
  std::vector<DeviceLinear> linears_;  // by LinearWeight::id
  std::vector<const void*> norms_;     // by NormWeight::id
};

}  // namespace kiln::cuda
