#include "quant/checkpoint_writer.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

#include "model/llama_projections.h"
#include "model/mapped_file.h"
#include "model/safetensors_writer.h"

namespace kiln::quant {
namespace {

using json = nlohmann::ordered_json;
namespace fs = std::filesystem;

}  // namespace

StatusOr<std::string> QuantizationConfigJson(const WeightQuantization& q) {
  if (q.format != WeightFormat::kFp8E4M3)
    return Status::InvalidArgument("cannot write a " + q.Describe() + " checkpoint");
  json qc;
  if (q.granularity == ScaleGranularity::kPerBlock) {
    qc = {{"quant_method", "fp8"},
          {"fmt", "e4m3"},
          {"activation_scheme", "dynamic"},
          {"weight_block_size", {q.block_out, q.block_in}}};
  } else if (q.granularity == ScaleGranularity::kPerChannel ||
             q.granularity == ScaleGranularity::kPerTensor) {
    const json fp8 = {{"num_bits", 8}, {"type", "float"}, {"symmetric", true}};
    json weights = fp8, acts = fp8;
    weights["strategy"] = q.granularity == ScaleGranularity::kPerChannel ? "channel" : "tensor";
    weights["dynamic"] = false;
    acts["strategy"] = "token";
    acts["dynamic"] = true;
    qc = {{"quant_method", "compressed-tensors"},
          {"format", "float-quantized"},
          {"quantization_status", "compressed"},
          {"config_groups",
           {{"group_0",
             {{"targets", {"Linear"}}, {"weights", weights}, {"input_activations", acts}}}}},
          {"ignore", {"lm_head"}}};
  } else {
    return Status::InvalidArgument("cannot write FP8 scales " + q.Describe());
  }
  return qc.dump();
}

Status CheckBlockFp8Portable(const ModelConfig& c, int block) {
  std::string bad;
  auto check = [&](const char* what, int64_t size) {
    if (size % block != 0)
      bad += std::string(bad.empty() ? "" : ", ") + what + " " + std::to_string(size);
  };
  check("hidden_size", c.hidden_size);
  check("intermediate_size", c.intermediate_size);
  check("q size (heads x head_dim)", int64_t{c.num_attention_heads} * c.head_dim);
  check("kv size (kv heads x head_dim)", c.kv_size());
  if (bad.empty()) return Status::Ok();
  return Status::InvalidArgument(bad + " not a multiple of " + std::to_string(block) + ": vLLM and " +
                                 "HF transformers cannot load a " + std::to_string(block) + "x" +
                                 std::to_string(block) + " block-FP8 checkpoint of this model");
}

Status WriteQuantizedCheckpoint(const LoadedModel& source, const LlamaWeights& quantized,
                                const std::string& out_dir) {
  if (source.format != "safetensors")
    return Status::InvalidArgument(
        "the source model must be an HF directory with safetensors "
        "weights, not " +
        source.format);
  KILN_ASSIGN_OR_RETURN(std::string qc_text, QuantizationConfigJson(quantized.quantization));
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) return Status::IOError(out_dir + ": " + ec.message());
  if (fs::equivalent(out_dir, source.source_path, ec))
    return Status::InvalidArgument(out_dir + ": the output directory is the source directory");
  const bool block = quantized.quantization.granularity == ScaleGranularity::kPerBlock;
  const bool channel = quantized.quantization.granularity == ScaleGranularity::kPerChannel;
  const ModelConfig& c = source.config;
  std::vector<std::pair<std::string, Tensor>> tensors;
  auto add = [&](const std::string& name, const Tensor& t) {
    if (t.defined()) tensors.emplace_back(name, t);
  };
  add("model.embed_tokens.weight", quantized.embed_tokens);
  for (size_t i = 0; i < quantized.layers.size(); ++i) {
    const LlamaWeights::Layer& l = quantized.layers[i];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    add(p + "input_layernorm.weight", l.input_layernorm);
    for (const ProjectionRef<const LlamaWeights::Layer>& proj : LayerProjections(l)) {
      add(p + proj.module + ".weight", *proj.weight);
      Tensor scale = proj.scales->weight;
      if (channel) scale.shape = {proj.weight->dim(0), 1};
      add(p + proj.module + (block ? ".weight_scale_inv" : ".weight_scale"), scale);
    }
    add(p + "self_attn.q_proj.bias", l.q_bias);
    add(p + "self_attn.k_proj.bias", l.k_bias);
    add(p + "self_attn.v_proj.bias", l.v_bias);
    add(p + "self_attn.o_proj.bias", l.o_bias);
    add(p + "mlp.gate_proj.bias", l.gate_bias);
    add(p + "mlp.up_proj.bias", l.up_bias);
    add(p + "mlp.down_proj.bias", l.down_bias);
    add(p + "self_attn.q_norm.weight", l.q_norm);
    add(p + "self_attn.k_norm.weight", l.k_norm);
    add(p + "post_attention_layernorm.weight", l.post_attention_layernorm);
  }
  add("model.norm.weight", quantized.norm);
  if (!c.tie_word_embeddings) add("lm_head.weight", quantized.lm_head);
  KILN_RETURN_IF_ERROR(WriteSafetensors(out_dir + "/model.safetensors", tensors));

  KILN_ASSIGN_OR_RETURN(std::string config_text,
                        ReadFileToString(source.source_path + "/config.json"));
  json config = json::parse(config_text, nullptr, false);
  if (config.is_discarded() || !config.is_object())
    return Status::InvalidArgument(source.source_path + "/config.json: not a JSON object");
  config["quantization_config"] = json::parse(qc_text);
  {
    std::ofstream out(out_dir + "/config.json", std::ios::trunc);
    out << config.dump(2) << "\n";
    if (!out) return Status::IOError(out_dir + "/config.json: write failed");
  }
  for (const char* name : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                           "generation_config.json", "tokenizer.model", "chat_template.jinja",
                           "chat_template.json", "vocab.json", "merges.txt", "added_tokens.json"}) {
    const std::string from = source.source_path + "/" + name;
    if (!FileExists(from)) continue;
    // The copy keeps the source's permissions; a read-only source (../shared) must not make the
    // output directory impossible to overwrite.
    const std::string to = out_dir + "/" + name;
    fs::remove(to, ec);
    fs::copy_file(from, to, ec);
    if (!ec) fs::permissions(to, fs::perms::owner_write, fs::perm_options::add, ec);
    if (ec) return Status::IOError(from + ": copy failed: " + ec.message());
  }
  return Status::Ok();
}

}  // namespace kiln::quant
