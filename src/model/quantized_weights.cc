#include "model/quantized_weights.h"

#include <cmath>
#include <string>
#include <vector>

#include "model/llama_projections.h"
#include "model/owned_tensor.h"

namespace kiln {
namespace {

enum class ScaleKind { kWeight, kInput };

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

// Whether a stored scale of shape `stored` holds the scales of logical shape `want`: exactly, or
// the spellings checkpoints use for the same thing ([] / [1] / [1, 1] for one value, [out, 1] for
// per-channel). A transposed or otherwise reshaped grid of the same size is not accepted.
bool ScaleShapeMatches(const std::vector<int64_t>& stored, const std::vector<int64_t>& want) {
  if (stored == want) return true;
  if (want.size() == 1) {
    if (want[0] == 1) return stored.empty() || stored == std::vector<int64_t>{1, 1};
    return stored == std::vector<int64_t>{want[0], 1};
  }
  return false;
}

// The checkpoint's scale tensor `name`, reshaped to `shape`. Checks its dtype, its shape and every
// value: weight scales finite and >= 0 (a zero scale is an all-zero block), input scales finite
// and > 0. A bad scale is an error naming the tensor and element, never wrong logits later.
StatusOr<Tensor> GetScale(const SafetensorsModel& checkpoint, const std::string& name,
                          std::vector<int64_t> shape, ScaleKind kind) {
  KILN_ASSIGN_OR_RETURN(Tensor t, checkpoint.GetTensor(name));
  if (t.dtype != DType::kF32 && t.dtype != DType::kBF16 && t.dtype != DType::kF16)
    return Status::InvalidArgument("scale tensor '" + name + "' has dtype " +
                                   std::string(DTypeName(t.dtype)) + ", expected a float type");
  if (!ScaleShapeMatches(t.shape, shape))
    return Status::InvalidArgument("scale tensor '" + name + "' has shape " +
                                   ShapeString(t.shape) + ", expected " + ShapeString(shape));
  t.shape = std::move(shape);
  const std::vector<float> values = t.ToFloatVector();
  for (size_t i = 0; i < values.size(); ++i) {
    const float v = values[i];
    const bool ok = std::isfinite(v) && (kind == ScaleKind::kWeight ? v >= 0.0f : v > 0.0f);
    if (!ok)
      return Status::InvalidArgument(
          "scale tensor '" + name + "' element " + std::to_string(i) + " is " +
          std::to_string(v) + (kind == ScaleKind::kWeight ? ": weight scales must be finite and >= 0"
                                                          : ": input scales must be finite and > 0"));
  }
  return t;
}

// The first of `names` the checkpoint holds (the last one, for the error, when none is there).
std::string FirstPresent(const SafetensorsModel& checkpoint, std::vector<std::string> names) {
  for (const std::string& n : names)
    if (checkpoint.Has(n)) return n;
  return names.front();
}

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

Status LoadQuantizedProjections(const SafetensorsModel& checkpoint,
                                const CheckpointQuantization& quantization, LlamaWeights* weights) {
  weights->quantization = quantization.weights;
  if (!quantization.quantized()) return Status::Ok();
  const WeightQuantization& q = quantization.weights;
  for (size_t i = 0; i < weights->layers.size(); ++i) {
    for (const ProjectionRef<LlamaWeights::Layer>& p : LayerProjections(weights->layers[i])) {
      const std::string module = "model.layers." + std::to_string(i) + "." + p.module;
      const Tensor& w = *p.weight;
      if (w.dtype != DType::kF8E4M3)
        return Status::Unimplemented(
            module + ".weight is stored as " + std::string(DTypeName(w.dtype)) + " in a " +
            q.Describe() +
            " checkpoint (checkpoints that leave projections unquantized are not "
            "supported)");
      if (w.shape.size() != 2) return Status::InvalidArgument(module + ".weight is not a matrix");
      const int64_t rows = w.dim(0), in = w.dim(1);
      std::vector<int64_t> shape;
      switch (q.granularity) {
        case ScaleGranularity::kPerTensor:
          shape = {1};
          break;
        case ScaleGranularity::kPerChannel:
          shape = {rows};
          break;
        case ScaleGranularity::kPerBlock:
          shape = {CeilDiv(rows, q.block_out), CeilDiv(in, q.block_in)};
          break;
        default:
          return Status::Unimplemented(module + ": scales " + q.Describe());
      }
      // Per-tensor FP8 checkpoints written by transformers name the weight scale
      // `weight_scale_inv` ([1, 1], the same dequantization multiplier) and the static input scale
      // `activation_scale`; llm-compressor / vLLM write `weight_scale` and `input_scale`.
      std::vector<std::string> weight_names = {module + "." + quantization.weight_scale_name};
      if (q.granularity == ScaleGranularity::kPerTensor)
        weight_names.push_back(module + ".weight_scale_inv");
      KILN_ASSIGN_OR_RETURN(p.scales->weight,
                            GetScale(checkpoint, FirstPresent(checkpoint, weight_names),
                                     std::move(shape), ScaleKind::kWeight));
      if (quantization.static_input_scale) {
        KILN_ASSIGN_OR_RETURN(
            p.scales->input,
            GetScale(checkpoint,
                     FirstPresent(checkpoint, {module + ".input_scale", module + ".activation_scale"}),
                     {1}, ScaleKind::kInput));
      }
    }
  }
  return Status::Ok();
}

LinearWeight ProjectionLinearWeight(const WeightQuantization& quantization, const Tensor& weight,
                                    const LlamaWeights::Layer::Scales& scales, std::string name) {
  LinearWeight lw;
  lw.name = std::move(name);
  lw.quant = quantization;
  lw.in_features = weight.shape.size() == 2 ? weight.dim(1) : 0;
  if (quantization.format == WeightFormat::kInt4) lw.in_features *= 2;
  lw.out_features = weight.shape.empty() ? 0 : weight.dim(0);
  lw.parts.push_back({weight, scales.weight, scales.input, Tensor()});
  return lw;
}

Status DequantizeProjections(LlamaWeights* weights) {
  if (weights->quantization.dense()) return Status::Ok();
  for (size_t i = 0; i < weights->layers.size(); ++i) {
    for (const ProjectionRef<LlamaWeights::Layer>& p : LayerProjections(weights->layers[i])) {
      const LinearWeight lw =
          ProjectionLinearWeight(weights->quantization, *p.weight, *p.scales,
                                 "layers." + std::to_string(i) + "." + p.short_name);
      KILN_RETURN_IF_ERROR(lw.Validate());
      std::vector<float> dense(static_cast<size_t>(lw.out_features * lw.in_features));
      lw.DequantizeRows(0, lw.out_features, dense.data());
      *p.weight = OwnedTensor(DType::kF32, {lw.out_features, lw.in_features}, std::move(dense));
      *p.scales = {};
    }
  }
  weights->quantization = WeightQuantization{};
  return Status::Ok();
}

}  // namespace kiln
