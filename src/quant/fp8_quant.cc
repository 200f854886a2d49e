#include "quant/fp8_quant.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>

#include "common/check.h"
#include "model/llama_projections.h"
#include "model/owned_tensor.h"

namespace kiln::quant {
namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

float Fp8ScaleForAmax(float amax) { return amax > 0.0f ? amax / kFp8E4M3Max : 1.0f; }

float AbsMax(const float* x, int64_t n) {
  float m = 0.0f;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(x[i]));  // max(m, NaN) keeps m
  return m;
}

void QuantizeFp8(const float* x, int64_t n, float scale, uint8_t* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = Fp8E4M3FromFloatSat(x[i] / scale);
}

void DequantizeFp8(const uint8_t* q, int64_t n, float scale, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = Fp8E4M3ToFloat(q[i]) * scale;
}

void RoundTripFp8(float* x, int64_t n, float scale) {
  for (int64_t i = 0; i < n; ++i) x[i] = Fp8E4M3ToFloat(Fp8E4M3FromFloatSat(x[i] / scale)) * scale;
}

Tensor OwnedFloatTensor(std::vector<int64_t> shape, std::vector<float> values) {
  return OwnedTensor(DType::kF32, std::move(shape), std::move(values));
}

Tensor OwnedFp8Tensor(std::vector<int64_t> shape, std::vector<uint8_t> codes) {
  return OwnedTensor(DType::kF8E4M3, std::move(shape), std::move(codes));
}

// ---- weights ------------------------------------------------------------------------------------

WeightQuantization Fp8Quantization(ScaleGranularity granularity, int block) {
  WeightQuantization q;
  q.format = WeightFormat::kFp8E4M3;
  q.granularity = granularity;
  if (granularity == ScaleGranularity::kPerBlock) q.block_out = q.block_in = block;
  return q;
}

StatusOr<LinearWeight::Part> QuantizeWeightFp8(const Tensor& dense,
                                               const WeightQuantization& target) {
  if (target.format != WeightFormat::kFp8E4M3)
    return Status::InvalidArgument("QuantizeWeightFp8: target format is " + target.Describe());
  if (!dense.defined() || dense.shape.size() != 2)
    return Status::InvalidArgument("QuantizeWeightFp8: the weight is not a matrix");
  if (!dense.is_dummy() && dense.dtype != DType::kF32 && dense.dtype != DType::kF16 &&
      dense.dtype != DType::kBF16)
    return Status::InvalidArgument("QuantizeWeightFp8: the weight is " +
                                   std::string(DTypeName(dense.dtype)) + ", not a dense type");
  const int64_t rows = dense.dim(0), in = dense.dim(1);
  std::vector<float> w = dense.ToFloatVector();
  std::vector<uint8_t> codes(w.size());
  std::vector<float> scales;
  std::vector<int64_t> scale_shape;
  switch (target.granularity) {
    case ScaleGranularity::kPerTensor: {
      scales = {Fp8ScaleForAmax(AbsMax(w.data(), rows * in))};
      scale_shape = {1};
      QuantizeFp8(w.data(), rows * in, scales[0], codes.data());
      break;
    }
    case ScaleGranularity::kPerChannel: {
      scales.resize(static_cast<size_t>(rows));
      scale_shape = {rows};
      for (int64_t r = 0; r < rows; ++r) {
        scales[r] = Fp8ScaleForAmax(AbsMax(w.data() + r * in, in));
        QuantizeFp8(w.data() + r * in, in, scales[r], codes.data() + r * in);
      }
      break;
    }
    case ScaleGranularity::kPerBlock: {
      if (target.block_out <= 0 || target.block_in <= 0)
        return Status::InvalidArgument("QuantizeWeightFp8: block sizes must be positive");
      const int64_t bo = target.block_out, bi = target.block_in;
      const int64_t grid_rows = CeilDiv(rows, bo), grid_cols = CeilDiv(in, bi);
      scale_shape = {grid_rows, grid_cols};
      scales.resize(static_cast<size_t>(grid_rows * grid_cols));
      for (int64_t br = 0; br < grid_rows; ++br) {
        const int64_t r0 = br * bo, r1 = std::min(rows, r0 + bo);
        for (int64_t bc = 0; bc < grid_cols; ++bc) {
          const int64_t c0 = bc * bi, c1 = std::min(in, c0 + bi);
          float amax = 0.0f;
          for (int64_t r = r0; r < r1; ++r)
            amax = std::max(amax, AbsMax(w.data() + r * in + c0, c1 - c0));
          const float s = Fp8ScaleForAmax(amax);
          scales[br * grid_cols + bc] = s;
          for (int64_t r = r0; r < r1; ++r)
            QuantizeFp8(w.data() + r * in + c0, c1 - c0, s, codes.data() + r * in + c0);
        }
      }
      break;
    }
    default:
      return Status::InvalidArgument(
          "QuantizeWeightFp8: FP8 supports per-tensor, per-channel and "
          "block scales, not " +
          target.Describe());
  }
  LinearWeight::Part part;
  part.weight = OwnedFp8Tensor({rows, in}, std::move(codes));
  part.scale = OwnedFloatTensor(std::move(scale_shape), std::move(scales));
  return part;
}

StatusOr<LinearWeight> QuantizeLinearWeightFp8(const LinearWeight& dense,
                                               const WeightQuantization& target) {
  if (!dense.quant.dense())
    return Status::InvalidArgument(dense.name + ": already stored as " + dense.quant.Describe());
  KILN_RETURN_IF_ERROR(dense.Validate());
  LinearWeight out;
  out.name = dense.name;
  out.id = dense.id;
  out.in_features = dense.in_features;
  out.out_features = dense.out_features;
  out.quant = target;
  out.smooth = dense.smooth;
  for (const LinearWeight::Part& p : dense.parts) {
    StatusOr<LinearWeight::Part> q = QuantizeWeightFp8(p.weight, target);
    if (!q.ok()) return q.status().WithContext(dense.name);
    q->bias = p.bias;
    q->input_scale = p.input_scale;
    out.parts.push_back(std::move(q).value());
  }
  KILN_RETURN_IF_ERROR(out.Validate());
  return out;
}

StatusOr<LlamaWeights> QuantizeLlamaWeightsFp8(const LlamaWeights& dense,
                                               const WeightQuantization& target) {
  if (!dense.quantization.dense())
    return Status::InvalidArgument("weights are already stored as " +
                                   dense.quantization.Describe());
  LlamaWeights out = dense;
  out.quantization = target;
  for (size_t i = 0; i < out.layers.size(); ++i) {
    for (const ProjectionRef<LlamaWeights::Layer>& p : LayerProjections(out.layers[i])) {
      StatusOr<LinearWeight::Part> q = QuantizeWeightFp8(*p.weight, target);
      if (!q.ok())
        return q.status().WithContext("layers." + std::to_string(i) + "." + p.short_name);
      *p.weight = q->weight;
      p.scales->weight = q->scale;
      p.scales->input = Tensor();
    }
  }
  return out;
}

// ---- activations --------------------------------------------------------------------------------

int64_t Fp8ActivationScheme::ScalesPerRow(int64_t in) const {
  switch (kind) {
    case Kind::kPerToken:
      return 1;
    case Kind::kPerTokenGroup:
      return CeilDiv(in, group_size);
    case Kind::kStatic:
      return 0;
  }
  return 0;
}

Fp8ActivationScheme ActivationSchemeFor(const LinearWeight& weight) {
  Fp8ActivationScheme s;
  if (weight.has_input_scale()) {
    s.kind = Fp8ActivationScheme::Kind::kStatic;
    s.static_scale = 0.0f;
    for (const LinearWeight::Part& p : weight.parts) {
      if (!p.input_scale.defined() && p.input_scale.size_bytes == 0) continue;
      float v = 0.0f;
      Tensor scalar = p.input_scale;
      scalar.shape = {1};
      scalar.ToFloat(0, 1, &v);
      s.static_scale = std::max(s.static_scale, v);
    }
  } else if (weight.quant.granularity == ScaleGranularity::kPerBlock) {
    s.kind = Fp8ActivationScheme::Kind::kPerTokenGroup;
    s.group_size = weight.quant.block_in;
  }
  return s;
}

namespace {

// Calls fn(begin, count, scale_index) for every scale group of a row of `in` values.
template <typename Fn>
void ForEachGroup(int64_t in, const Fp8ActivationScheme& scheme, Fn fn) {
  if (scheme.kind == Fp8ActivationScheme::Kind::kPerTokenGroup) {
    for (int64_t g = 0, c = 0; c < in; ++g, c += scheme.group_size)
      fn(c, std::min<int64_t>(scheme.group_size, in - c), g);
  } else {
    fn(0, in, 0);
  }
}

}  // namespace

void QuantizeActivationsFp8(const float* x, int64_t n, int64_t in,
                            const Fp8ActivationScheme& scheme, uint8_t* q, float* scales) {
  KILN_CHECK(scheme.kind != Fp8ActivationScheme::Kind::kPerTokenGroup || scheme.group_size > 0);
  const int64_t per_row = scheme.ScalesPerRow(in);
  for (int64_t r = 0; r < n; ++r) {
    const float* row = x + r * in;
    ForEachGroup(in, scheme, [&](int64_t c, int64_t count, int64_t g) {
      float s = scheme.static_scale;
      if (scheme.kind != Fp8ActivationScheme::Kind::kStatic) {
        s = Fp8ScaleForAmax(AbsMax(row + c, count));
        scales[r * per_row + g] = s;
      }
      QuantizeFp8(row + c, count, s, q + r * in + c);
    });
  }
}

void RoundTripActivationsFp8(float* x, int64_t n, int64_t in, const Fp8ActivationScheme& scheme) {
  KILN_CHECK(scheme.kind != Fp8ActivationScheme::Kind::kPerTokenGroup || scheme.group_size > 0);
  for (int64_t r = 0; r < n; ++r) {
    float* row = x + r * in;
    ForEachGroup(in, scheme, [&](int64_t c, int64_t count, int64_t) {
      const float s = scheme.kind == Fp8ActivationScheme::Kind::kStatic
                          ? scheme.static_scale
                          : Fp8ScaleForAmax(AbsMax(row + c, count));
      RoundTripFp8(row + c, count, s);
    });
  }
}

// ---- the FP8 linear twin
// --------------------------------------------------------------------------

Status Fp8Linear(const float* x, int64_t n, const LinearWeight& weight, float* y) {
  return Fp8Linear(x, n, weight, ActivationSchemeFor(weight), y);
}

Status Fp8Linear(const float* x, int64_t n, const LinearWeight& weight,
                 const Fp8ActivationScheme& scheme, float* y) {
  if (weight.quant.format != WeightFormat::kFp8E4M3)
    return Status::InvalidArgument(weight.name + ": Fp8Linear needs FP8 weights, not " +
                                   weight.quant.Describe());
  if (scheme.kind == Fp8ActivationScheme::Kind::kPerTokenGroup && scheme.group_size <= 0)
    return Status::InvalidArgument(weight.name + ": activation group size must be positive");
  if (scheme.kind == Fp8ActivationScheme::Kind::kStatic && !(scheme.static_scale > 0.0f))
    return Status::InvalidArgument(weight.name + ": static input scale must be positive");
  KILN_RETURN_IF_ERROR(weight.Validate());
  const int64_t in = weight.in_features, out = weight.out_features;
  std::vector<float> xq(x, x + n * in);
  RoundTripActivationsFp8(xq.data(), n, in, scheme);
  std::vector<float> w(static_cast<size_t>(out * in));
  weight.DequantizeRows(0, out, w.data());
  std::vector<float> bias(static_cast<size_t>(out), 0.0f);
  int64_t row = 0;
  for (const LinearWeight::Part& p : weight.parts) {
    if (p.bias.defined()) p.bias.ToFloat(0, p.rows(), bias.data() + row);
    row += p.rows();
  }
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t o = 0; o < out; ++o) {
      float acc = 0.0f;
      for (int64_t i = 0; i < in; ++i) acc += xq[t * in + i] * w[o * in + i];
      y[t * out + o] = acc + bias[o];
    }
  }
  return Status::Ok();
}

}  // namespace kiln::quant
