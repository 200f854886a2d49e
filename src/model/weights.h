// Model weights in memory: Tensor (a typed, shaped view over bytes that it keeps alive),
// LlamaWeights (every tensor of a Llama-family decoder: Llama, Qwen2, Qwen3), LoadedModel
// (config + weights + the source it came from) and LoadModel(), the one entry point that reads an
// HF directory (config.json + safetensors), a .gguf file, or builds dummy weights.
//
// Layout: every matrix is in HF layout, [out_features, in_features] row-major, whatever the source
// (GGUF llama q/k rows are un-permuted at load so RoPE is rotate-half everywhere). Embeddings are
// [vocab_size, hidden_size]. Q8_0 GGUF tensors are dequantized to F32 at load, so loaded tensors
// are F32, F16 or BF16.
//
// Dummy weights (ModelOptions::load_format == "dummy"): tensors carry a shape, a dtype (the
// checkpoint's torch_dtype) and size_bytes, but data == nullptr; element i of such a tensor is
// Tensor::DummyValue(i): 1.0 for norm weights (dummy_fill == kOnes) and
// DummyWeightValue(dummy_seed, i) otherwise. Every backend materializes dummy tensors through
// exactly these functions, so the CPU and CUDA backends compute on identical weights.
//
// Thread-safety: a LoadedModel is immutable after LoadModel returns and may be shared by any number
// of threads (it is handed out as shared_ptr<const LoadedModel>).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/options.h"
#include "kiln/status.h"
#include "model/model_config.h"
#include "model/weight_quantization.h"

#if defined(__CUDACC__)
#define KILN_HOST_DEVICE __host__ __device__
#else
#define KILN_HOST_DEVICE
#endif

namespace kiln {

class GgufFile;  // model/gguf.h

enum class DType : uint8_t {
  kF32,
  kF16,
  kBF16,
  kQ8_0,     // GGUF blocks of 32: f16 scale + 32 int8 (34 bytes); dequantized at load
  kF8E4M3,   // OCP FP8 E4M3 (fn: no infinities, max 448, 0x7F/0xFF NaN); safetensors F8_E4M3
  kI8,       // int8 (SmoothQuant W8A8 weights)
};

std::string_view DTypeName(DType dtype);
// Bytes per element for F32/F16/BF16; 0 for block-quantized types.
size_t DTypeSize(DType dtype);

// IEEE half / bfloat16 bit patterns → float (exact).
KILN_HOST_DEVICE inline float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1Fu;
  uint32_t mantissa = h & 0x3FFu;
  uint32_t bits;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      exponent = 127 - 15 + 1;
      while ((mantissa & 0x400u) == 0) {
        mantissa <<= 1;
        --exponent;
      }
      mantissa &= 0x3FFu;
      bits = sign | (exponent << 23) | (mantissa << 13);
    }
  } else if (exponent == 0x1F) {
    bits = sign | 0x7F800000u | (mantissa << 13);
  } else {
    bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}
// OCP FP8 E4M3 (torch.float8_e4m3fn) bit pattern → float (exact): bias 7, subnormals at
// exponent 0, S.1111.111 is NaN, no infinities.
KILN_HOST_DEVICE inline float Fp8E4M3ToFloat(uint8_t v) {
  const uint32_t sign = static_cast<uint32_t>(v & 0x80u) << 24;
  const uint32_t exponent = (v >> 3) & 0xFu;
  const uint32_t mantissa = v & 0x7u;
  uint32_t bits;
  if (exponent == 0xF && mantissa == 0x7) {
    bits = sign | 0x7FC00000u;
  } else if (exponent == 0) {
    // subnormal: mantissa * 2^-9
    const float f = static_cast<float>(mantissa) * (1.0f / 512.0f);
    float r = (v & 0x80u) ? -f : f;
    return r;
  } else {
    bits = sign | ((exponent + 127 - 7) << 23) | (mantissa << 20);
  }
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}
KILN_HOST_DEVICE inline float BFloat16ToFloat(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// The value of element `index` of a random dummy tensor with seed `seed`: splitmix64 of
// (seed ^ (index * 0x9E3779B97F4A7C15)), top 24 bits → u in [0, 1), returned as (2u - 1) * 0.02,
// i.e. uniform in [-0.02, 0.02). Exactly reproducible on CPU and GPU.
KILN_HOST_DEVICE inline float DummyWeightValue(uint64_t seed, int64_t index) {
  uint64_t z = seed ^ (static_cast<uint64_t>(index) * 0x9E3779B97F4A7C15ull);
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z = z ^ (z >> 31);
  const float u = static_cast<float>(z >> 40) * (1.0f / 16777216.0f);
  return (2.0f * u - 1.0f) * 0.02f;
}

struct Tensor {
  enum class DummyFill : uint8_t {
    kNone,     // real data (or an absent tensor)
    kUniform,  // DummyWeightValue(dummy_seed, i)
    kOnes,     // 1.0 (norm weights)
  };

  DType dtype = DType::kF32;
  std::vector<int64_t> shape;  // empty → the tensor is absent (e.g. no bias in this architecture)
  const void* data = nullptr;  // row-major; nullptr for dummy tensors
  size_t size_bytes = 0;       // bytes at `data` (for dummy tensors: what real data would occupy)
  DummyFill dummy_fill = DummyFill::kNone;
  uint64_t dummy_seed = 0;
  // Keeps `data` alive: an owned buffer or the mmap of the file it points into.
  std::shared_ptr<const void> storage;

  bool defined() const { return !shape.empty(); }
  bool is_dummy() const { return dummy_fill != DummyFill::kNone; }
  int64_t numel() const {
    if (shape.empty()) return 0;
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  int64_t dim(int i) const { return shape[static_cast<size_t>(i)]; }
  // Element i of a dummy tensor.
  float DummyValue(int64_t i) const {
    return dummy_fill == DummyFill::kOnes ? 1.0f : DummyWeightValue(dummy_seed, i);
  }
  // Converts elements [begin, begin + count) to float32 (any dtype, dummy included).
  // Requires dtype F32/F16/BF16/F8_E4M3/I8 (quantized types give the stored value, unscaled) or a
  // dummy tensor, and the range inside numel().
  void ToFloat(int64_t begin, int64_t count, float* out) const;
  std::vector<float> ToFloatVector() const;
};

// All weights of a Llama-family decoder, HF names and layout. Optional tensors are !defined().
struct LlamaWeights {
  Tensor embed_tokens;  // [vocab_size, hidden_size]
  struct Layer {
    Tensor input_layernorm;           // [hidden_size]
    Tensor q_proj;                    // [q_size, hidden_size]
    Tensor k_proj;                    // [kv_size, hidden_size]
    Tensor v_proj;                    // [kv_size, hidden_size]
    Tensor q_bias;                    // [q_size]   (attention_bias)
    Tensor k_bias;                    // [kv_size]  (attention_bias)
    Tensor v_bias;                    // [kv_size]  (attention_bias)
    Tensor o_bias;                    // [hidden_size] (o_bias)
    Tensor gate_bias, up_bias;        // [intermediate_size] (mlp_bias)
    Tensor down_bias;                 // [hidden_size] (mlp_bias)
    Tensor q_norm;                    // [head_dim] (qk_norm)
    Tensor k_norm;                    // [head_dim] (qk_norm)
    Tensor o_proj;                    // [hidden_size, q_size]
    Tensor post_attention_layernorm;  // [hidden_size]
    Tensor gate_proj;                 // [intermediate_size, hidden_size]
    Tensor up_proj;                   // [intermediate_size, hidden_size]
    Tensor down_proj;                 // [hidden_size, intermediate_size]
    // Quantized checkpoints only (LlamaWeights::quantization not dense): each projection's
    // weight scale (see linear_weight.h for shapes and meaning) and optional static input scale.
    struct Scales {
      Tensor weight;
      Tensor input;
    };
    Scales q_scales, k_scales, v_scales, o_scales, gate_scales, up_scales, down_scales;
  };
  std::vector<Layer> layers;  // [num_hidden_layers]
  Tensor norm;                // [hidden_size]
  Tensor lm_head;             // [vocab_size, hidden_size]; same data as embed_tokens when tied
  // How q/k/v/o/gate/up/down are stored; embeddings, norms and lm_head are always dense.
  WeightQuantization quantization;

  // Total bytes of all distinct tensors (tied lm_head counted once).
  size_t size_bytes() const;
};

struct LoadedModel {
  ModelConfig config;
  LlamaWeights weights;
  std::string source_path;  // the model_path it was loaded from
  std::string format;       // "safetensors" | "gguf" | "dummy"
  // The parsed GGUF file (metadata incl. tokenizer.ggml.*) when format == "gguf"; else null.
  std::shared_ptr<const GgufFile> gguf;
};

// Loads config + weights from options.model_path:
//  - a directory with config.json (+ generation_config.json) and model.safetensors or a sharded
//    model.safetensors.index.json; with load_format "dummy" only config.json is needed;
//  - a .gguf file (architectures llama, qwen2).
// Errors name the file and the problem (missing tensor, bad shape, unsupported architecture).
StatusOr<std::shared_ptr<const LoadedModel>> LoadModel(const ModelOptions& options);

// Checks every tensor of `weights` against `config` (presence and shape). Used by the loaders and
// available to tests.
Status ValidateWeights(const ModelConfig& config, const LlamaWeights& weights);

}  // namespace kiln
