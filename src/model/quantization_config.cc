#include "model/quantization_config.h"

#include <nlohmann/json.hpp>

namespace kiln {
namespace {

using json = nlohmann::json;

std::string Field(const std::string& field) {
  return field.empty() ? "quantization_config" : "quantization_config." + field;
}
Status Bad(const std::string& field, const std::string& what) {
  return Status::InvalidArgument(Field(field) + ": " + what);
}
Status Unsupported(const std::string& field, const std::string& what) {
  return Status::Unimplemented(Field(field) + ": " + what);
}

// obj[key] as a string: absent or null → `fallback`; another type → an error naming the field.
StatusOr<std::string> StringOr(const json& obj, const char* key, const std::string& fallback,
                               const std::string& field) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_string()) return Bad(field, "must be a string, got " + it->dump());
  return it->get<std::string>();
}

// obj[key] as a boolean: absent or null → `fallback`; another type → an error.
StatusOr<bool> BoolOr(const json& obj, const char* key, bool fallback, const std::string& field) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) return Bad(field, "must be true or false, got " + it->dump());
  return it->get<bool>();
}

// [b0, b1] of positive integers into *q as block scales.
Status ParseBlock(const json& j, const std::string& field, WeightQuantization* q) {
  if (!j.is_array() || j.size() != 2 || !j[0].is_number_unsigned() || !j[1].is_number_unsigned() ||
      j[0].get<uint64_t>() == 0 || j[1].get<uint64_t>() == 0 || j[0].get<uint64_t>() > 65536 ||
      j[1].get<uint64_t>() > 65536)
    return Bad(field, "must be two positive integers, got " + j.dump());
  q->granularity = ScaleGranularity::kPerBlock;
  q->block_out = static_cast<int>(j[0].get<uint64_t>());
  q->block_in = static_cast<int>(j[1].get<uint64_t>());
  return Status::Ok();
}

StatusOr<CheckpointQuantization> ParseFp8(const json& qc) {
  CheckpointQuantization out;
  out.method = "fp8";
  out.weights.format = WeightFormat::kFp8E4M3;
  KILN_ASSIGN_OR_RETURN(const std::string fmt, StringOr(qc, "fmt", "e4m3", "fmt"));
  if (fmt != "e4m3") return Unsupported("fmt", "'" + fmt + "' (kiln supports e4m3)");
  KILN_ASSIGN_OR_RETURN(const std::string act,
                        StringOr(qc, "activation_scheme", "dynamic", "activation_scheme"));
  if (act != "dynamic" && act != "static")
    return Bad("activation_scheme", "must be dynamic or static, got '" + act + "'");
  out.static_input_scale = act == "static";
  auto block = qc.find("weight_block_size");
  if (block != qc.end() && !block->is_null()) {
    KILN_RETURN_IF_ERROR(ParseBlock(*block, "weight_block_size", &out.weights));
    if (out.static_input_scale)
      return Unsupported("activation_scheme", "static activations with block-wise weights");
    out.weight_scale_name = "weight_scale_inv";
  } else {
    out.weights.granularity = ScaleGranularity::kPerTensor;
    out.weight_scale_name = "weight_scale";
  }
  return out;
}

// Checks an FP8 quantization args object ({num_bits, type, symmetric, ...}).
Status CheckFloat8Args(const json& args, const std::string& field) {
  if (!args.is_object()) return Bad(field, "must be an object");
  KILN_ASSIGN_OR_RETURN(const std::string type, StringOr(args, "type", "", field + ".type"));
  auto bits = args.find("num_bits");
  if (type != "float" || bits == args.end() || !bits->is_number_integer() || *bits != 8)
    return Unsupported(field,
                       "only 8-bit float (FP8 E4M3) quantization is supported, got " + args.dump());
  KILN_ASSIGN_OR_RETURN(const bool symmetric,
                        BoolOr(args, "symmetric", true, field + ".symmetric"));
  if (!symmetric) return Unsupported(field, "asymmetric FP8 quantization");
  return Status::Ok();
}

StatusOr<CheckpointQuantization> ParseCompressedTensors(const json& qc) {
  CheckpointQuantization out;
  out.method = "compressed-tensors";
  out.weights.format = WeightFormat::kFp8E4M3;
  out.weight_scale_name = "weight_scale";
  KILN_ASSIGN_OR_RETURN(const std::string format,
                        StringOr(qc, "format", "float-quantized", "format"));
  if (format != "float-quantized" && format != "naive-quantized")
    return Unsupported("format", "'" + format + "' (kiln loads float-quantized FP8 checkpoints)");
  auto groups = qc.find("config_groups");
  if (groups == qc.end() || !groups->is_object() || groups->empty())
    return Bad("config_groups", "missing or empty");
  if (groups->size() != 1)
    return Unsupported("config_groups", "several quantization groups (mixed schemes)");
  const json& g = groups->begin().value();
  const std::string gname = "config_groups." + groups->begin().key();
  if (!g.is_object()) return Bad(gname, "must be an object");
  auto weights = g.find("weights");
  if (weights == g.end() || weights->is_null()) return Unsupported(gname, "no weight quantization");
  KILN_RETURN_IF_ERROR(CheckFloat8Args(*weights, gname + ".weights"));
  KILN_ASSIGN_OR_RETURN(const std::string strategy,
                        StringOr(*weights, "strategy", "tensor", gname + ".weights.strategy"));
  if (strategy == "tensor") {
    out.weights.granularity = ScaleGranularity::kPerTensor;
  } else if (strategy == "channel") {
    out.weights.granularity = ScaleGranularity::kPerChannel;
  } else if (strategy == "block") {
    auto bs = weights->find("block_structure");
    if (bs == weights->end()) return Bad(gname + ".weights.block_structure", "missing");
    KILN_RETURN_IF_ERROR(ParseBlock(*bs, gname + ".weights.block_structure", &out.weights));
  } else {
    return Unsupported(gname + ".weights.strategy",
                       "'" + strategy + "' (supported: tensor, channel, block)");
  }
  KILN_ASSIGN_OR_RETURN(const bool dynamic_weights,
                        BoolOr(*weights, "dynamic", false, gname + ".weights.dynamic"));
  if (dynamic_weights)
    return Unsupported(gname + ".weights.dynamic", "dynamically quantized weights");
  auto acts = g.find("input_activations");
  if (acts != g.end() && !acts->is_null()) {
    KILN_RETURN_IF_ERROR(CheckFloat8Args(*acts, gname + ".input_activations"));
    KILN_ASSIGN_OR_RETURN(const bool dynamic, BoolOr(*acts, "dynamic", false,
                                                     gname + ".input_activations.dynamic"));
    KILN_ASSIGN_OR_RETURN(const std::string a,
                          StringOr(*acts, "strategy", "tensor",
                                   gname + ".input_activations.strategy"));
    if (!dynamic) {
      if (a != "tensor")
        return Unsupported(gname + ".input_activations",
                           "static activation scales other than per-tensor");
      if (out.weights.granularity == ScaleGranularity::kPerBlock)
        return Unsupported(gname + ".input_activations",
                           "static activations with block-wise weights");
      out.static_input_scale = true;
    } else if (a != "token" && a != "tensor" && a != "group") {
      return Unsupported(gname + ".input_activations.strategy", "'" + a + "'");
    }
  }
  return out;
}

}  // namespace

StatusOr<CheckpointQuantization> ParseQuantizationConfig(std::string_view config_json) {
  const json j = json::parse(config_json.begin(), config_json.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return Status::InvalidArgument("config.json is not a JSON object");
  auto qc = j.find("quantization_config");
  if (qc == j.end() || qc->is_null()) return CheckpointQuantization{};
  if (!qc->is_object()) return Bad("", "must be an object");
  auto method = qc->find("quant_method");
  if (method == qc->end() || !method->is_string()) return Bad("quant_method", "missing");
  const std::string m = method->get<std::string>();
  if (m == "fp8") return ParseFp8(*qc);
  if (m == "compressed-tensors") return ParseCompressedTensors(*qc);
  return Status::Unimplemented("quantization_config.quant_method '" + m +
                               "' is not supported (kiln loads fp8 and compressed-tensors FP8 "
                               "checkpoints)");
}

}  // namespace kiln
