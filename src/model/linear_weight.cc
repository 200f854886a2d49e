#include "model/linear_weight.h"

#include <algorithm>

#include "common/check.h"

namespace kiln {

std::string_view WeightFormatName(WeightFormat format) {
  switch (format) {
    case WeightFormat::kDense:
      return "dense";
    case WeightFormat::kFp8E4M3:
      return "fp8";
    case WeightFormat::kInt8:
      return "int8";
    case WeightFormat::kInt4:
      return "int4";
  }
  return "?";
}

std::string_view ScaleGranularityName(ScaleGranularity granularity) {
  switch (granularity) {
    case ScaleGranularity::kNone:
      return "none";
    case ScaleGranularity::kPerTensor:
      return "per-tensor";
    case ScaleGranularity::kPerChannel:
      return "per-channel";
    case ScaleGranularity::kPerBlock:
      return "block";
    case ScaleGranularity::kPerGroup:
      return "per-group";
  }
  return "?";
}

std::string WeightQuantization::Describe() const {
  if (dense()) return "dense";
  std::string s = std::string(WeightFormatName(format)) + " " +
                  std::string(ScaleGranularityName(granularity));
  if (granularity == ScaleGranularity::kPerBlock) {
    s += " " + std::to_string(block_out) + "x" + std::to_string(block_in);
  } else if (granularity == ScaleGranularity::kPerGroup) {
    s += " " + std::to_string(group_size);
  }
  return s;
}

bool LinearWeight::has_bias() const {
  return std::any_of(parts.begin(), parts.end(), [](const Part& p) { return p.bias.defined(); });
}

bool LinearWeight::has_input_scale() const {
  return std::any_of(parts.begin(), parts.end(),
                     [](const Part& p) { return p.input_scale.defined(); });
}

size_t LinearWeight::size_bytes() const {
  size_t bytes = 0;
  for (const Part& p : parts) bytes += p.weight.size_bytes + p.scale.size_bytes;
  return bytes;
}

namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Expected scale shape of a part of `rows` rows.
std::vector<int64_t> ScaleShape(const WeightQuantization& q, int64_t rows, int64_t in) {
  switch (q.granularity) {
    case ScaleGranularity::kNone:
      return {};
    case ScaleGranularity::kPerTensor:
      return {1};
    case ScaleGranularity::kPerChannel:
      return {rows};
    case ScaleGranularity::kPerBlock:
      return {CeilDiv(rows, q.block_out), CeilDiv(in, q.block_in)};
    case ScaleGranularity::kPerGroup:
      return {rows, in / q.group_size};
  }
  return {};
}

}  // namespace

Status LinearWeight::Validate() const {
  auto bad = [&](const std::string& m) { return Status::InvalidArgument(name + ": " + m); };
  if (parts.empty()) return bad("no weight");
  if (quant.granularity == ScaleGranularity::kPerBlock &&
      (quant.block_out <= 0 || quant.block_in <= 0))
    return bad("block scales need positive block sizes");
  if (quant.granularity == ScaleGranularity::kPerGroup &&
      (quant.group_size <= 0 || in_features % quant.group_size != 0))
    return bad("group size must divide in_features");
  if (quant.dense() != (quant.granularity == ScaleGranularity::kNone))
    return bad("a dense weight has no scales and a quantized one needs them");
  int64_t rows = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const Part& p = parts[i];
    const std::string part = "part " + std::to_string(i);
    if (!p.weight.defined() || p.weight.shape.size() != 2) return bad(part + " is not a matrix");
    const int64_t stored_in = quant.format == WeightFormat::kInt4 ? in_features / 2 : in_features;
    if (p.weight.dim(1) != stored_in)
      return bad(part + " has " + std::to_string(p.weight.dim(1)) + " columns, expected " +
                 std::to_string(stored_in));
    const DType want = quant.format == WeightFormat::kFp8E4M3 ? DType::kF8E4M3
                       : quant.format == WeightFormat::kInt8 || quant.format == WeightFormat::kInt4
                           ? DType::kI8
                           : p.weight.dtype;
    if (p.weight.dtype != want && !p.weight.is_dummy())
      return bad(part + " is stored as " + std::string(DTypeName(p.weight.dtype)) + " but the " +
                 quant.Describe() + " format needs " + std::string(DTypeName(want)));
    if (quant.dense() &&
        !(p.weight.dtype == DType::kF32 || p.weight.dtype == DType::kF16 ||
          p.weight.dtype == DType::kBF16))
      return bad(part + " is " + std::string(DTypeName(p.weight.dtype)) + " without scales");
    const std::vector<int64_t> want_scale = ScaleShape(quant, p.rows(), in_features);
    if (want_scale != p.scale.shape) {
      // A per-tensor scale may be stored as a 0-d tensor (shape []) → treat [1] and [] alike.
      const bool scalar_ok = quant.granularity == ScaleGranularity::kPerTensor &&
                             p.scale.shape.empty() && p.scale.size_bytes > 0;
      if (!scalar_ok) return bad(part + " has a scale of the wrong shape for " + quant.Describe());
    }
    if (p.bias.defined() && (p.bias.shape.size() != 1 || p.bias.dim(0) != p.rows()))
      return bad(part + " has a bias of the wrong shape");
    if (p.input_scale.defined() && p.input_scale.numel() != 1)
      return bad(part + " has an input_scale that is not a scalar");
    rows += p.rows();
  }
  if (rows != out_features)
    return bad("parts have " + std::to_string(rows) + " rows, expected " +
               std::to_string(out_features));
  if (smooth.defined() && smooth.numel() != in_features)
    return bad("smoothing vector has the wrong length");
  return Status::Ok();
}

void LinearWeight::DequantizeRows(int64_t row_begin, int64_t num_rows, float* out) const {
  KILN_CHECK(row_begin >= 0 && num_rows >= 0 && row_begin + num_rows <= out_features);
  const int64_t in = in_features;
  int64_t part_begin = 0;
  std::vector<float> scales, raw;
  for (const Part& p : parts) {
    const int64_t part_end = part_begin + p.rows();
    const int64_t lo = std::max(row_begin, part_begin), hi = std::min(row_begin + num_rows, part_end);
    if (lo < hi) {
      if (p.scale.defined() || p.scale.size_bytes > 0) {
        scales.resize(static_cast<size_t>(std::max<int64_t>(p.scale.numel(), 1)));
        if (p.scale.shape.empty()) {
          Tensor scalar = p.scale;
          scalar.shape = {1};
          scalar.ToFloat(0, 1, scales.data());
        } else {
          p.scale.ToFloat(0, p.scale.numel(), scales.data());
        }
      }
      for (int64_t r = lo; r < hi; ++r) {
        const int64_t local = r - part_begin;
        float* dst = out + (r - row_begin) * in;
        if (quant.format == WeightFormat::kInt4) {
          const int64_t bytes = in / 2;
          raw.resize(static_cast<size_t>(bytes));
          p.weight.ToFloat(local * bytes, bytes, raw.data());
          for (int64_t i = 0; i < bytes; ++i) {
            const int v = static_cast<int>(raw[static_cast<size_t>(i)]) & 0xFF;
            const int lo_n = v & 0xF, hi_n = v >> 4;
            dst[2 * i] = static_cast<float>(lo_n >= 8 ? lo_n - 16 : lo_n);
            dst[2 * i + 1] = static_cast<float>(hi_n >= 8 ? hi_n - 16 : hi_n);
          }
        } else {
          p.weight.ToFloat(local * in, in, dst);
        }
        switch (quant.granularity) {
          case ScaleGranularity::kNone:
            break;
          case ScaleGranularity::kPerTensor:
            for (int64_t i = 0; i < in; ++i) dst[i] *= scales[0];
            break;
          case ScaleGranularity::kPerChannel:
            for (int64_t i = 0; i < in; ++i) dst[i] *= scales[static_cast<size_t>(local)];
            break;
          case ScaleGranularity::kPerBlock: {
            const int64_t cols = CeilDiv(in, quant.block_in);
            const float* row_scales = scales.data() + (local / quant.block_out) * cols;
            for (int64_t i = 0; i < in; ++i) dst[i] *= row_scales[i / quant.block_in];
            break;
          }
          case ScaleGranularity::kPerGroup: {
            const float* row_scales = scales.data() + local * (in / quant.group_size);
            for (int64_t i = 0; i < in; ++i) dst[i] *= row_scales[i / quant.group_size];
            break;
          }
        }
      }
    }
    part_begin = part_end;
  }
}

}  // namespace kiln
