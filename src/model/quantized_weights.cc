#include "model/quantized_weights.h"

#include <vector>

#include "model/llama_projections.h"
#include "model/owned_tensor.h"

namespace kiln {
namespace {

// The checkpoint's tensor `name` reshaped to `shape` when its element count is the same.
StatusOr<Tensor> GetScale(const SafetensorsModel& checkpoint, const std::string& name,
                          std::vector<int64_t> shape) {
  KILN_ASSIGN_OR_RETURN(Tensor t, checkpoint.GetTensor(name));
  if (t.dtype != DType::kF32 && t.dtype != DType::kBF16 && t.dtype != DType::kF16)
    return Status::InvalidArgument("scale tensor '" + name + "' has dtype " +
                                   std::string(DTypeName(t.dtype)) + ", expected a float type");
  int64_t want = 1;
  for (int64_t d : shape) want *= d;
  const int64_t have = static_cast<int64_t>(t.size_bytes / DTypeSize(t.dtype));
  if (have != want)
    return Status::InvalidArgument("scale tensor '" + name + "' has " + std::to_string(have) +
                                   " elements, expected " + std::to_string(want));
  t.shape = std::move(shape);
  return t;
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
      KILN_ASSIGN_OR_RETURN(
          p.scales->weight,
          GetScale(checkpoint, module + "." + quantization.weight_scale_name, std::move(shape)));
      if (quantization.static_input_scale) {
        KILN_ASSIGN_OR_RETURN(p.scales->input, GetScale(checkpoint, module + ".input_scale", {1}));
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
