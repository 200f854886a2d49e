// `kiln quantize`: writes an FP8 checkpoint of a dense HF model.
//
//   kiln quantize --model IN --quantization fp8 --out DIR [--quantization-scale auto|block|
//       per-channel|per-tensor]
//
// block writes the block-FP8 format (128×128 blocks, `weight_scale_inv`, quantization_config
// quant_method "fp8": what DeepSeek / Qwen FP8 checkpoints use and vLLM and HF transformers load);
// it is refused for a model whose sizes are not whole blocks (CheckBlockFp8Portable), since vLLM
// and transformers could not load the result. per-channel / per-tensor write compressed-tensors
// float-quantized checkpoints with dynamic per-token activations (any shape). auto (the default):
// block where the shape allows it, else per-channel. Embeddings, norms and lm_head stay as stored.
// See quant/checkpoint_writer.h.
#include <cstdio>
#include <string>

#include "flags.h"
#include "model/weights.h"
#include "quant/checkpoint_writer.h"
#include "quant/fp8_quant.h"
#include "subcommands.h"

namespace kiln::cli {
namespace {

Status Quantize(int argc, char** argv) {
  Flags f;
  f.Value("model", "dense HF model directory (config.json + safetensors)");
  f.Value("quantization", "fp8 (E4M3)");
  f.Value("quantization-scale",
          "auto (default: block where the model's sizes are whole 128x128 blocks, else "
          "per-channel) | block | per-channel | per-tensor");
  f.Value("out", "output directory (created; files in it are overwritten)");
  KILN_RETURN_IF_ERROR(f.Parse(argc, argv, 2));
  ModelOptions options;
  options.model_path = f.GetString("model");
  const std::string out = f.GetString("out");
  if (options.model_path.empty()) return Status::InvalidArgument("--model is required");
  if (out.empty()) return Status::InvalidArgument("--out is required");
  const std::string method = f.GetString("quantization");
  if (method != "fp8")
    return Status::InvalidArgument("--quantization must be fp8, got '" + method + "'");
  std::string scale = f.GetString("quantization-scale", "auto");
  if (scale != "auto" && scale != "block" && scale != "per-channel" && scale != "per-tensor")
    return Status::InvalidArgument(
        "--quantization-scale must be auto, block, per-channel or per-tensor, got '" + scale + "'");
  KILN_ASSIGN_OR_RETURN(auto model, LoadModel(options));
  if (!model->weights.quantization.dense())
    return Status::InvalidArgument(options.model_path + " is already quantized (" +
                                   model->weights.quantization.Describe() + ")");
  const Status portable = quant::CheckBlockFp8Portable(model->config, 128);
  if (scale == "block" && !portable.ok())
    return Status::InvalidArgument("--quantization-scale block: " + portable.message() +
                                   "; use --quantization-scale per-channel");
  if (scale == "auto") {
    scale = portable.ok() ? "block" : "per-channel";
    if (!portable.ok())
      std::fprintf(stderr, "kiln quantize: per-channel scales (compressed-tensors): %s\n",
                   portable.message().c_str());
  }
  const WeightQuantization target =
      quant::Fp8Quantization(scale == "block"         ? ScaleGranularity::kPerBlock
                             : scale == "per-channel" ? ScaleGranularity::kPerChannel
                                                      : ScaleGranularity::kPerTensor);
  KILN_ASSIGN_OR_RETURN(LlamaWeights quantized,
                        quant::QuantizeLlamaWeightsFp8(model->weights, target));
  KILN_RETURN_IF_ERROR(quant::WriteQuantizedCheckpoint(*model, quantized, out));
  std::fprintf(stderr, "kiln quantize: wrote %s (%s, %.2f MB of weights from %.2f MB)\n",
               out.c_str(), target.Describe().c_str(), quantized.size_bytes() / 1e6,
               model->weights.size_bytes() / 1e6);
  return Status::Ok();
}

}  // namespace

int RunQuantize(int argc, char** argv) {
  Status s = Quantize(argc, argv);
  if (!s.ok()) {
    std::fprintf(stderr, "kiln quantize: error: %s\n", s.message().c_str());
    return s.code() == StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}

}  // namespace kiln::cli
