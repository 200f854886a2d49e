#include "model/weights.h"

#include <set>

#include "common/check.h"
#include "model/linear_weight.h"
#include "model/quantized_weights.h"

namespace kiln {

std::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
    case DType::kQ8_0:
      return "Q8_0";
    case DType::kF8E4M3:
      return "F8_E4M3";
    case DType::kI8:
      return "I8";
  }
  return "?";
}

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
      return 2;
    case DType::kQ8_0:
      return 0;
    case DType::kF8E4M3:
    case DType::kI8:
      return 1;
  }
  return 0;
}

void Tensor::ToFloat(int64_t begin, int64_t count, float* out) const {
  KILN_CHECK(begin >= 0 && count >= 0 && begin + count <= numel()) << "range outside tensor";
  if (is_dummy()) {
    for (int64_t i = 0; i < count; ++i) out[i] = DummyValue(begin + i);
    return;
  }
  KILN_CHECK(data != nullptr);
  switch (dtype) {
    case DType::kF32:
      std::memcpy(out, static_cast<const float*>(data) + begin, static_cast<size_t>(count) * 4);
      return;
    // safetensors does not align tensor data: read 16-bit values with memcpy (no misaligned
    // loads; regression: fuzz corpus safetensors/misaligned-bf16).
    case DType::kF16: {
      const unsigned char* p = static_cast<const unsigned char*>(data) + begin * 2;
      for (int64_t i = 0; i < count; ++i) {
        uint16_t v;
        std::memcpy(&v, p + i * 2, 2);
        out[i] = HalfToFloat(v);
      }
      return;
    }
    case DType::kBF16: {
      const unsigned char* p = static_cast<const unsigned char*>(data) + begin * 2;
      for (int64_t i = 0; i < count; ++i) {
        uint16_t v;
        std::memcpy(&v, p + i * 2, 2);
        out[i] = BFloat16ToFloat(v);
      }
      return;
    }
    case DType::kF8E4M3: {
      const uint8_t* p = static_cast<const uint8_t*>(data) + begin;
      for (int64_t i = 0; i < count; ++i) out[i] = Fp8E4M3ToFloat(p[i]);
      return;
    }
    case DType::kI8: {
      const int8_t* p = static_cast<const int8_t*>(data) + begin;
      for (int64_t i = 0; i < count; ++i) out[i] = static_cast<float>(p[i]);
      return;
    }
    case DType::kQ8_0:
      break;
  }
  KILN_CHECK(false) << "ToFloat: unsupported dtype " << DTypeName(dtype);
}

std::vector<float> Tensor::ToFloatVector() const {
  std::vector<float> out(static_cast<size_t>(numel()));
  ToFloat(0, numel(), out.data());
  return out;
}

size_t LlamaWeights::size_bytes() const {
  std::set<const void*> seen;
  size_t total = 0;
  auto add = [&](const Tensor& t) {
    if (!t.defined()) return;
    if (t.data != nullptr && !seen.insert(t.data).second) return;
    total += t.size_bytes;
  };
  add(embed_tokens);
  for (const Layer& l : layers) {
    for (const Tensor* t : {&l.input_layernorm, &l.q_proj, &l.k_proj, &l.v_proj, &l.q_bias,
                            &l.k_bias, &l.v_bias, &l.q_norm, &l.k_norm, &l.o_proj, &l.o_bias,
                            &l.post_attention_layernorm, &l.gate_proj, &l.up_proj, &l.down_proj,
                            &l.gate_bias, &l.up_bias, &l.down_bias})
      add(*t);
  }
  add(norm);
  // A tied (or dummy tied) lm_head shares embed_tokens' data and seed.
  if (!(lm_head.data == embed_tokens.data && lm_head.dummy_seed == embed_tokens.dummy_seed &&
        lm_head.dummy_fill == embed_tokens.dummy_fill))
    add(lm_head);
  return total;
}

namespace {

Status CheckTensor(const Tensor& t, const std::string& name, std::vector<int64_t> want,
                   bool required) {
  if (!t.defined()) {
    if (required) return Status::NotFound("missing tensor " + name);
    return Status::Ok();
  }
  if (!required) return Status::InvalidArgument("unexpected tensor " + name + " for this config");
  if (t.shape != want) {
    auto str = [](const std::vector<int64_t>& s) {
      std::string r = "[";
      for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
      return r + "]";
    };
    return Status::InvalidArgument("tensor " + name + " has shape " + str(t.shape) + ", expected " +
                                   str(want));
  }
  if (t.dtype != DType::kF32 && t.dtype != DType::kF16 && t.dtype != DType::kBF16)
    return Status::Unimplemented("tensor " + name + " has dtype " +
                                 std::string(DTypeName(t.dtype)));
  if (!t.is_dummy() &&
      (t.data == nullptr || t.size_bytes != static_cast<size_t>(t.numel()) * DTypeSize(t.dtype)))
    return Status::DataLoss("tensor " + name + " has inconsistent data size");
  return Status::Ok();
}

// A projection: dense like any tensor, or quantized in weights.quantization's format with scales
// that LinearWeight::Validate accepts.
Status CheckProjection(const LlamaWeights& w, const Tensor& t,
                       const LlamaWeights::Layer::Scales& scales, const std::string& name,
                       std::vector<int64_t> want) {
  if (w.quantization.dense()) {
    if (scales.weight.defined() || scales.input.defined())
      return Status::InvalidArgument("tensor " + name + " has scales but the weights are dense");
    return CheckTensor(t, name, std::move(want), true);
  }
  if (!t.defined()) return Status::NotFound("missing tensor " + name);
  const LinearWeight lw = ProjectionLinearWeight(w.quantization, t, scales, name);
  if (lw.out_features != want[0] || lw.in_features != want[1])
    return Status::InvalidArgument("tensor " + name + " is [" + std::to_string(lw.out_features) +
                                   ", " + std::to_string(lw.in_features) + "], expected [" +
                                   std::to_string(want[0]) + ", " + std::to_string(want[1]) + "]");
  KILN_RETURN_IF_ERROR(lw.Validate());
  if (!t.is_dummy() &&
      (t.data == nullptr || t.size_bytes != static_cast<size_t>(t.numel()) * DTypeSize(t.dtype)))
    return Status::DataLoss("tensor " + name + " has inconsistent data size");
  return Status::Ok();
}

}  // namespace

Status ValidateWeights(const ModelConfig& c, const LlamaWeights& w) {
  const int64_t h = c.hidden_size, v = c.vocab_size, q = c.q_size(), kv = c.kv_size(),
                inter = c.intermediate_size, d = c.head_dim;
  KILN_RETURN_IF_ERROR(CheckTensor(w.embed_tokens, "embed_tokens", {v, h}, true));
  KILN_RETURN_IF_ERROR(CheckTensor(w.norm, "norm", {h}, true));
  KILN_RETURN_IF_ERROR(CheckTensor(w.lm_head, "lm_head", {v, h}, true));
  if (w.layers.size() != static_cast<size_t>(c.num_hidden_layers))
    return Status::InvalidArgument("weights have " + std::to_string(w.layers.size()) +
                                   " layers, config says " + std::to_string(c.num_hidden_layers));
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const LlamaWeights::Layer& l = w.layers[i];
    const std::string p = "layers." + std::to_string(i) + ".";
    KILN_RETURN_IF_ERROR(CheckTensor(l.input_layernorm, p + "input_layernorm", {h}, true));
    KILN_RETURN_IF_ERROR(CheckProjection(w, l.q_proj, l.q_scales, p + "q_proj", {q, h}));
    KILN_RETURN_IF_ERROR(CheckProjection(w, l.k_proj, l.k_scales, p + "k_proj", {kv, h}));
    KILN_RETURN_IF_ERROR(CheckProjection(w, l.v_proj, l.v_scales, p + "v_proj", {kv, h}));
    KILN_RETURN_IF_ERROR(CheckTensor(l.q_bias, p + "q_bias", {q}, c.attention_bias));
    KILN_RETURN_IF_ERROR(CheckTensor(l.k_bias, p + "k_bias", {kv}, c.attention_bias));
    KILN_RETURN_IF_ERROR(CheckTensor(l.v_bias, p + "v_bias", {kv}, c.attention_bias));
    KILN_RETURN_IF_ERROR(CheckTensor(l.q_norm, p + "q_norm", {d}, c.qk_norm));
    KILN_RETURN_IF_ERROR(CheckTensor(l.k_norm, p + "k_norm", {d}, c.qk_norm));
    KILN_RETURN_IF_ERROR(CheckProjection(w, l.o_proj, l.o_scales, p + "o_proj", {h, q}));
    KILN_RETURN_IF_ERROR(CheckTensor(l.o_bias, p + "o_bias", {h}, c.o_bias));
    KILN_RETURN_IF_ERROR(
        CheckTensor(l.post_attention_layernorm, p + "post_attention_layernorm", {h}, true));
    KILN_RETURN_IF_ERROR(
        CheckProjection(w, l.gate_proj, l.gate_scales, p + "gate_proj", {inter, h}));
    KILN_RETURN_IF_ERROR(CheckProjection(w, l.up_proj, l.up_scales, p + "up_proj", {inter, h}));
    KILN_RETURN_IF_ERROR(
        CheckProjection(w, l.down_proj, l.down_scales, p + "down_proj", {h, inter}));
    KILN_RETURN_IF_ERROR(CheckTensor(l.gate_bias, p + "gate_bias", {inter}, c.mlp_bias));
    KILN_RETURN_IF_ERROR(CheckTensor(l.up_bias, p + "up_bias", {inter}, c.mlp_bias));
    KILN_RETURN_IF_ERROR(CheckTensor(l.down_bias, p + "down_bias", {h}, c.mlp_bias));
  }
  return Status::Ok();
}

}  // namespace kiln
