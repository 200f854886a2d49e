// LoadModel: dispatches on the path (directory → HF config + safetensors or dummy weights;
// .gguf → GGUF) and returns an immutable LoadedModel. See weights.h.
#include <functional>

#include "common/logging.h"
#include "model/gguf.h"
#include "model/mapped_file.h"
#include "model/quantization_config.h"
#include "model/quantized_weights.h"
#include "model/safetensors.h"
#include "model/weights.h"

namespace kiln {
namespace {

// Calls fn(tensor, hf_name, shape, is_norm) for every tensor the config needs (HF names).
void ForEachHfTensor(
    const ModelConfig& c, LlamaWeights* w,
    const std::function<void(Tensor*, const std::string&, std::vector<int64_t>, bool)>& fn) {
  const int64_t h = c.hidden_size, v = c.vocab_size, q = c.q_size(), kv = c.kv_size(),
                inter = c.intermediate_size, d = c.head_dim;
  fn(&w->embed_tokens, "model.embed_tokens.weight", {v, h}, false);
  w->layers.resize(static_cast<size_t>(c.num_hidden_layers));
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    LlamaWeights::Layer& l = w->layers[static_cast<size_t>(i)];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    fn(&l.input_layernorm, p + "input_layernorm.weight", {h}, true);
    fn(&l.q_proj, p + "self_attn.q_proj.weight", {q, h}, false);
    fn(&l.k_proj, p + "self_attn.k_proj.weight", {kv, h}, false);
    fn(&l.v_proj, p + "self_attn.v_proj.weight", {kv, h}, false);
    if (c.attention_bias) {
      fn(&l.q_bias, p + "self_attn.q_proj.bias", {q}, false);
      fn(&l.k_bias, p + "self_attn.k_proj.bias", {kv}, false);
      fn(&l.v_bias, p + "self_attn.v_proj.bias", {kv}, false);
    }
    if (c.qk_norm) {
      fn(&l.q_norm, p + "self_attn.q_norm.weight", {d}, true);
      fn(&l.k_norm, p + "self_attn.k_norm.weight", {d}, true);
    }
    fn(&l.o_proj, p + "self_attn.o_proj.weight", {h, q}, false);
    if (c.o_bias) fn(&l.o_bias, p + "self_attn.o_proj.bias", {h}, false);
    fn(&l.post_attention_layernorm, p + "post_attention_layernorm.weight", {h}, true);
    fn(&l.gate_proj, p + "mlp.gate_proj.weight", {inter, h}, false);
    fn(&l.up_proj, p + "mlp.up_proj.weight", {inter, h}, false);
    fn(&l.down_proj, p + "mlp.down_proj.weight", {h, inter}, false);
    if (c.mlp_bias) {
      fn(&l.gate_bias, p + "mlp.gate_proj.bias", {inter}, false);
      fn(&l.up_bias, p + "mlp.up_proj.bias", {inter}, false);
      fn(&l.down_bias, p + "mlp.down_proj.bias", {h}, false);
    }
  }
  fn(&w->norm, "model.norm.weight", {h}, true);
  if (!c.tie_word_embeddings) fn(&w->lm_head, "lm_head.weight", {v, h}, false);
}

uint64_t DummyTensorSeed(uint64_t model_seed, const std::string& name) {
  uint64_t hash = 0xcbf29ce484222325ull;  // FNV-1a
  for (unsigned char ch : name) hash = (hash ^ ch) * 0x100000001b3ull;
  return hash ^ (model_seed * 0x9E3779B97F4A7C15ull);
}

StatusOr<DType> DummyDType(const ModelOptions& options, const ModelConfig& config) {
  const std::string& d = options.dtype == "auto" ? config.torch_dtype : options.dtype;
  if (d == "bfloat16") return DType::kBF16;
  if (d == "float16") return DType::kF16;
  if (d == "float32") return DType::kF32;
  return Status::InvalidArgument("dtype '" + d + "' is not supported");
}

StatusOr<std::shared_ptr<const LoadedModel>> LoadHfDirectory(const ModelOptions& options) {
  auto model = std::make_shared<LoadedModel>();
  model->source_path = options.model_path;
  KILN_ASSIGN_OR_RETURN(model->config, LoadHfConfig(options.model_path));
  const ModelConfig& c = model->config;
  Status status;
  if (options.load_format == "dummy") {
    model->format = "dummy";
    KILN_ASSIGN_OR_RETURN(DType dtype, DummyDType(options, c));
    ForEachHfTensor(
        c, &model->weights,
        [&](Tensor* t, const std::string& name, std::vector<int64_t> shape, bool is_norm) {
          t->dtype = dtype;
          t->shape = std::move(shape);
          t->size_bytes = static_cast<size_t>(t->numel()) * DTypeSize(dtype);
          t->dummy_fill = is_norm ? Tensor::DummyFill::kOnes : Tensor::DummyFill::kUniform;
          t->dummy_seed = DummyTensorSeed(options.dummy_seed, name);
        });
  } else if (options.load_format == "auto" || options.load_format == "safetensors") {
    model->format = "safetensors";
    KILN_ASSIGN_OR_RETURN(SafetensorsModel st, SafetensorsModel::Open(options.model_path));
    KILN_ASSIGN_OR_RETURN(std::string config_text,
                          ReadFileToString(options.model_path + "/config.json"));
    StatusOr<CheckpointQuantization> quantization = ParseQuantizationConfig(config_text);
    if (!quantization.ok())
      return quantization.status().WithContext(options.model_path + "/config.json");
    ForEachHfTensor(c, &model->weights,
                    [&](Tensor* t, const std::string& name, std::vector<int64_t>, bool) {
                      if (!status.ok()) return;
                      // A tied checkpoint may store the shared matrix as lm_head.weight only
                      // (HF loads either name into both).
                      const bool tied_lm_head_only = name == "model.embed_tokens.weight" &&
                                                     c.tie_word_embeddings && !st.Has(name) &&
                                                     st.Has("lm_head.weight");
                      StatusOr<Tensor> got =
                          st.GetTensor(tied_lm_head_only ? "lm_head.weight" : name);
                      if (!got.ok()) {
                        status = got.status();
                        return;
                      }
                      *t = std::move(got).value();
                    });
    KILN_RETURN_IF_ERROR(status.WithContext(options.model_path));
    status = LoadQuantizedProjections(st, *quantization, &model->weights);
    if (status.ok() && options.quantization == "none")
      status = DequantizeProjections(&model->weights);
    KILN_RETURN_IF_ERROR(status.WithContext(options.model_path));
  } else {
    return Status::InvalidArgument("load_format '" + options.load_format + "' is not supported");
  }
  if (c.tie_word_embeddings) model->weights.lm_head = model->weights.embed_tokens;
  Status valid = ValidateWeights(c, model->weights);
  if (!valid.ok()) return valid.WithContext(options.model_path);
  return std::shared_ptr<const LoadedModel>(std::move(model));
}

StatusOr<std::shared_ptr<const LoadedModel>> LoadGguf(const ModelOptions& options) {
  if (options.load_format == "dummy")
    return Status::InvalidArgument("load_format dummy needs an HF directory with config.json");
  auto model = std::make_shared<LoadedModel>();
  model->source_path = options.model_path;
  model->format = "gguf";
  KILN_ASSIGN_OR_RETURN(model->gguf, GgufFile::Open(options.model_path));
  StatusOr<ModelConfig> config = ModelConfigFromGguf(*model->gguf);
  if (!config.ok()) return config.status().WithContext(options.model_path);
  model->config = std::move(config).value();
  StatusOr<LlamaWeights> weights = LoadGgufWeights(*model->gguf, model->config);
  if (!weights.ok()) return weights.status().WithContext(options.model_path);
  model->weights = std::move(weights).value();
  Status valid = ValidateWeights(model->config, model->weights);
  if (!valid.ok()) return valid.WithContext(options.model_path);
  return std::shared_ptr<const LoadedModel>(std::move(model));
}

}  // namespace

StatusOr<std::shared_ptr<const LoadedModel>> LoadModel(const ModelOptions& options) {
  if (options.model_path.empty()) return Status::InvalidArgument("model_path is empty");
  if (IsDirectory(options.model_path)) return LoadHfDirectory(options);
  if (EndsWith(options.model_path, ".gguf")) return LoadGguf(options);
  if (!FileExists(options.model_path))
    return Status::NotFound(options.model_path + ": no such file or directory");
  return Status::InvalidArgument(options.model_path +
                                 ": expected an HF model directory or a .gguf file");
}

}  // namespace kiln
