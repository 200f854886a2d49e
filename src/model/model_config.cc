#include "model/model_config.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "common/logging.h"
#include "model/mapped_file.h"

namespace kiln {
namespace {

using json = nlohmann::json;

constexpr int64_t kMaxDim = int64_t{1} << 20;  // any single size past this is absurd

// Reads an optional integer field; null / absent leaves *out unchanged.
Status GetInt(const json& j, const char* key, int* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return Status::Ok();
  if (!it->is_number_integer())
    return Status::InvalidArgument(std::string("config: ") + key + " must be an integer");
  const int64_t v = it->get<int64_t>();
  if (v < -1 || v > (int64_t{1} << 30))
    return Status::InvalidArgument(std::string("config: ") + key + " out of range");
  *out = static_cast<int>(v);
  return Status::Ok();
}

Status GetDouble(const json& j, const char* key, double* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return Status::Ok();
  if (!it->is_number())
    return Status::InvalidArgument(std::string("config: ") + key + " must be a number");
  *out = it->get<double>();
  if (!std::isfinite(*out))
    return Status::InvalidArgument(std::string("config: ") + key + " is not finite");
  return Status::Ok();
}

Status GetBool(const json& j, const char* key, bool* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return Status::Ok();
  if (!it->is_boolean())
    return Status::InvalidArgument(std::string("config: ") + key + " must be a boolean");
  *out = it->get<bool>();
  return Status::Ok();
}

// eos_token_id: int, list of ints or null.
Status GetTokenIds(const json& j, const char* key, std::vector<int32_t>* out, bool* present) {
  *present = false;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return Status::Ok();
  std::vector<int32_t> ids;
  auto add = [&](const json& v) -> Status {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > (int64_t{1} << 30))
      return Status::InvalidArgument(std::string("config: ") + key +
                                     " must hold non-negative integers");
    ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
    return Status::Ok();
  };
  if (it->is_array()) {
    for (const json& v : *it) KILN_RETURN_IF_ERROR(add(v));
  } else {
    KILN_RETURN_IF_ERROR(add(*it));
  }
  *out = std::move(ids);
  *present = true;
  return Status::Ok();
}

// Parses a rope_scaling / rope_parameters object into config->rope_scaling (and rope_theta when
// the object carries it, as transformers-5 does).
Status ParseRope(const json& r, ModelConfig* config) {
  if (!r.is_object())
    return Status::InvalidArgument("config: rope_scaling/rope_parameters must be an object");
  KILN_RETURN_IF_ERROR(GetDouble(r, "rope_theta", &config->rope_theta));
  std::string type = "default";
  for (const char* key : {"rope_type", "type"}) {
    auto it = r.find(key);
    if (it != r.end() && it->is_string()) {
      type = it->get<std::string>();
      break;
    }
  }
  RopeScaling& s = config->rope_scaling;
  if (type == "default") {
    s.type = RopeScaling::Type::kNone;
    return Status::Ok();
  }
  if (type == "linear") {
    s.type = RopeScaling::Type::kLinear;
  } else if (type == "dynamic") {
    s.type = RopeScaling::Type::kDynamic;
  } else if (type == "llama3") {
    s.type = RopeScaling::Type::kLlama3;
  } else if (type == "yarn") {
    s.type = RopeScaling::Type::kYarn;
  } else {
    return Status::Unimplemented("config: rope type '" + type + "' is not supported");
  }
  KILN_RETURN_IF_ERROR(GetDouble(r, "factor", &s.factor));
  KILN_RETURN_IF_ERROR(GetDouble(r, "low_freq_factor", &s.low_freq_factor));
  KILN_RETURN_IF_ERROR(GetDouble(r, "high_freq_factor", &s.high_freq_factor));
  KILN_RETURN_IF_ERROR(
      GetInt(r, "original_max_position_embeddings", &s.original_max_position_embeddings));
  KILN_RETURN_IF_ERROR(GetDouble(r, "beta_fast", &s.beta_fast));
  KILN_RETURN_IF_ERROR(GetDouble(r, "beta_slow", &s.beta_slow));
  KILN_RETURN_IF_ERROR(GetDouble(r, "attention_factor", &s.attention_factor));
  KILN_RETURN_IF_ERROR(GetDouble(r, "mscale", &s.mscale));
  KILN_RETURN_IF_ERROR(GetDouble(r, "mscale_all_dim", &s.mscale_all_dim));
  KILN_RETURN_IF_ERROR(GetBool(r, "truncate", &s.truncate));
  return Status::Ok();
}

}  // namespace

Status ModelConfig::Validate() const {
  auto bad = [](const std::string& m) { return Status::InvalidArgument("config: " + m); };
  if (architecture != "llama" && architecture != "qwen2" && architecture != "qwen3")
    return Status::Unimplemented("config: architecture '" + architecture + "' is not supported");
  auto positive = [&](const char* name, int64_t v) -> Status {
    if (v <= 0 || v > kMaxDim)
      return bad(std::string(name) + " = " + std::to_string(v) + " is out of range");
    return Status::Ok();
  };
  KILN_RETURN_IF_ERROR(positive("vocab_size", vocab_size));
  KILN_RETURN_IF_ERROR(positive("hidden_size", hidden_size));
  KILN_RETURN_IF_ERROR(positive("intermediate_size", intermediate_size));
  KILN_RETURN_IF_ERROR(positive("num_hidden_layers", num_hidden_layers));
  KILN_RETURN_IF_ERROR(positive("num_attention_heads", num_attention_heads));
  KILN_RETURN_IF_ERROR(positive("num_key_value_heads", num_key_value_heads));
  KILN_RETURN_IF_ERROR(positive("head_dim", head_dim));
  KILN_RETURN_IF_ERROR(positive("max_position_embeddings", max_position_embeddings));
  if (num_hidden_layers > 1024) return bad("num_hidden_layers too large");
  if (num_attention_heads % num_key_value_heads != 0)
    return bad("num_attention_heads must be a multiple of num_key_value_heads");
  if (head_dim % 2 != 0 || head_dim > 1024) return bad("head_dim must be even and <= 1024");
  if (static_cast<int64_t>(num_attention_heads) * head_dim > kMaxDim)
    return bad("q size too large");
  if (!(rms_norm_eps > 0.0) || rms_norm_eps > 1.0) return bad("rms_norm_eps out of range");
  if (!(rope_theta > 1.0) || !std::isfinite(rope_theta)) return bad("rope_theta must be > 1");
  if (hidden_act != "silu")
    return Status::Unimplemented("config: hidden_act '" + hidden_act + "' is not supported");
  if (rope_scaling.type != RopeScaling::Type::kNone) {
    if (!(rope_scaling.factor > 0.0) || rope_scaling.factor > 1e6)
      return bad("rope scaling factor out of range");
    if (rope_scaling.type == RopeScaling::Type::kLlama3) {
      if (rope_scaling.original_max_position_embeddings <= 0)
        return bad("llama3 rope needs original_max_position_embeddings");
      if (!(rope_scaling.high_freq_factor > rope_scaling.low_freq_factor) ||
          !(rope_scaling.low_freq_factor > 0))
        return bad("llama3 rope needs 0 < low_freq_factor < high_freq_factor");
    }
    if (rope_scaling.type == RopeScaling::Type::kYarn &&
        (!(rope_scaling.beta_fast > 0) || !(rope_scaling.beta_slow > 0)))
      return bad("yarn beta_fast/beta_slow must be > 0");
  }
  for (int32_t id : eos_token_ids)
    if (id < 0 || id >= vocab_size)
      return bad("eos_token_id " + std::to_string(id) + " outside vocabulary");
  if (bos_token_id >= vocab_size) return bad("bos_token_id outside vocabulary");
  return Status::Ok();
}

StatusOr<ModelConfig> ParseHfConfig(std::string_view config_json) {
  json j = json::parse(config_json.begin(), config_json.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Status::DataLoss("config.json: not a JSON object");
  ModelConfig c;
  std::string arch_name;
  auto archs = j.find("architectures");
  if (archs != j.end() && archs->is_array() && !archs->empty() && (*archs)[0].is_string()) {
    arch_name = (*archs)[0].get<std::string>();
  } else if (j.contains("model_type") && j["model_type"].is_string()) {
    arch_name = j["model_type"].get<std::string>();
  } else {
    return Status::InvalidArgument("config.json: no architectures or model_type");
  }
  if (arch_name == "LlamaForCausalLM" || arch_name == "MistralForCausalLM" ||
      arch_name == "llama" || arch_name == "mistral") {
    c.architecture = "llama";
  } else if (arch_name == "Qwen2ForCausalLM" || arch_name == "qwen2") {
    c.architecture = "qwen2";
    c.attention_bias = true;
  } else if (arch_name == "Qwen3ForCausalLM" || arch_name == "qwen3") {
    c.architecture = "qwen3";
    c.qk_norm = true;
  } else {
    return Status::Unimplemented("config.json: architecture '" + arch_name + "' is not supported");
  }
  KILN_RETURN_IF_ERROR(GetInt(j, "vocab_size", &c.vocab_size));
  KILN_RETURN_IF_ERROR(GetInt(j, "hidden_size", &c.hidden_size));
  KILN_RETURN_IF_ERROR(GetInt(j, "intermediate_size", &c.intermediate_size));
  KILN_RETURN_IF_ERROR(GetInt(j, "num_hidden_layers", &c.num_hidden_layers));
  KILN_RETURN_IF_ERROR(GetInt(j, "num_attention_heads", &c.num_attention_heads));
  c.num_key_value_heads = c.num_attention_heads;
  KILN_RETURN_IF_ERROR(GetInt(j, "num_key_value_heads", &c.num_key_value_heads));
  c.head_dim = 0;
  KILN_RETURN_IF_ERROR(GetInt(j, "head_dim", &c.head_dim));
  if (c.head_dim <= 0 && c.num_attention_heads > 0)
    c.head_dim = c.hidden_size / c.num_attention_heads;
  KILN_RETURN_IF_ERROR(GetDouble(j, "rms_norm_eps", &c.rms_norm_eps));
  KILN_RETURN_IF_ERROR(GetDouble(j, "rope_theta", &c.rope_theta));
  KILN_RETURN_IF_ERROR(GetInt(j, "max_position_embeddings", &c.max_position_embeddings));
  KILN_RETURN_IF_ERROR(GetBool(j, "tie_word_embeddings", &c.tie_word_embeddings));
  if (c.architecture != "qwen2")
    KILN_RETURN_IF_ERROR(GetBool(j, "attention_bias", &c.attention_bias));
  // HF: Llama and Qwen3 build o_proj with bias=attention_bias; Qwen2 biases q/k/v only.
  c.o_bias = c.attention_bias && c.architecture != "qwen2";
  KILN_RETURN_IF_ERROR(GetBool(j, "mlp_bias", &c.mlp_bias));
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    auto it = j.find(key);
    if (it != j.end() && !it->is_null()) KILN_RETURN_IF_ERROR(ParseRope(*it, &c));
  }
  if (c.rope_scaling.type == RopeScaling::Type::kLlama3 ||
      c.rope_scaling.type == RopeScaling::Type::kYarn ||
      c.rope_scaling.type == RopeScaling::Type::kDynamic) {
    if (c.rope_scaling.original_max_position_embeddings <= 0)
      c.rope_scaling.original_max_position_embeddings = c.max_position_embeddings;
  }
  auto act = j.find("hidden_act");
  if (act != j.end() && act->is_string()) c.hidden_act = act->get<std::string>();
  for (const char* key : {"torch_dtype", "dtype"}) {
    auto it = j.find(key);
    if (it != j.end() && it->is_string()) c.torch_dtype = it->get<std::string>();
  }
  // Sliding-window attention (Mistral: whenever sliding_window is set; Qwen2/3: with
  // use_sliding_window) is not implemented. Within the window it equals full attention, so the
  // context is capped at the window rather than computing something else past it (Mistral's
  // window used to be ignored without a word).
  bool use_sliding_window = false;
  KILN_RETURN_IF_ERROR(GetBool(j, "use_sliding_window", &use_sliding_window));
  int sliding_window = 0;
  if (auto sw = j.find("sliding_window"); sw != j.end() && !sw->is_null()) {
    if (!sw->is_number_integer() || sw->get<int64_t>() <= 0 ||
        sw->get<int64_t>() > std::numeric_limits<int32_t>::max()) {
      return Status::InvalidArgument("config.json: sliding_window must be a positive integer");
    }
    sliding_window = sw->get<int>();
  }
  const bool mistral = arch_name == "MistralForCausalLM" || arch_name == "mistral";
  if (use_sliding_window && sliding_window == 0) {
    return Status::InvalidArgument("config.json: use_sliding_window needs a sliding_window");
  }
  if (sliding_window > 0 && (mistral || use_sliding_window) &&
      sliding_window < c.max_position_embeddings) {
    KILN_LOG(WARNING) << "config.json: sliding-window attention (window " << sliding_window
                      << ") is not implemented: the context is capped at the window, where it "
                         "equals full attention (max_position_embeddings "
                      << c.max_position_embeddings << " -> " << sliding_window << ")";
    c.max_position_embeddings = sliding_window;
  }
  int bos = -1;
  KILN_RETURN_IF_ERROR(GetInt(j, "bos_token_id", &bos));
  c.bos_token_id = bos;
  bool present = false;
  KILN_RETURN_IF_ERROR(GetTokenIds(j, "eos_token_id", &c.eos_token_ids, &present));
  KILN_RETURN_IF_ERROR(c.Validate());
  return c;
}

Status ApplyGenerationConfig(std::string_view generation_config_json, ModelConfig* config) {
  json j =
      json::parse(generation_config_json.begin(), generation_config_json.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return Status::DataLoss("generation_config.json: not a JSON object");
  ModelConfig c = *config;
  bool present = false;
  std::vector<int32_t> eos;
  KILN_RETURN_IF_ERROR(GetTokenIds(j, "eos_token_id", &eos, &present));
  if (present) c.eos_token_ids = eos;
  int bos = c.bos_token_id;
  KILN_RETURN_IF_ERROR(GetInt(j, "bos_token_id", &bos));
  c.bos_token_id = bos;
  double v = -1;
  // The sampling defaults a request inherits: out-of-range values are errors naming the field
  // (they were taken as given and failed, or sampled oddly, on every request).
  auto present_value = [&](const char* key) { return j.contains(key) && !j[key].is_null(); };
  KILN_RETURN_IF_ERROR(GetDouble(j, "temperature", &v));
  if (present_value("temperature")) {
    if (!(std::isfinite(v) && v >= 0)) {
      return Status::InvalidArgument("generation_config.json: temperature must be >= 0");
    }
    c.default_temperature = static_cast<float>(v);
  }
  v = -1;
  KILN_RETURN_IF_ERROR(GetDouble(j, "top_p", &v));
  if (present_value("top_p")) {
    if (!(v > 0 && v <= 1)) {
      return Status::InvalidArgument("generation_config.json: top_p must be in (0, 1]");
    }
    c.default_top_p = static_cast<float>(v);
  }
  KILN_RETURN_IF_ERROR(GetInt(j, "top_k", &c.default_top_k));
  if (c.default_top_k < -1) {
    return Status::InvalidArgument("generation_config.json: top_k must be >= -1");
  }
  v = -1;
  KILN_RETURN_IF_ERROR(GetDouble(j, "repetition_penalty", &v));
  if (present_value("repetition_penalty")) {
    if (!(std::isfinite(v) && v > 0)) {
      return Status::InvalidArgument("generation_config.json: repetition_penalty must be > 0");
    }
    c.default_repetition_penalty = static_cast<float>(v);
  }
  KILN_RETURN_IF_ERROR(c.Validate());
  *config = std::move(c);
  return Status::Ok();
}

StatusOr<ModelConfig> LoadHfConfig(const std::string& directory) {
  const std::string path = directory + "/config.json";
  KILN_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  StatusOr<ModelConfig> config = ParseHfConfig(text);
  if (!config.ok()) return config.status().WithContext(path);
  const std::string gen_path = directory + "/generation_config.json";
  if (FileExists(gen_path)) {
    KILN_ASSIGN_OR_RETURN(std::string gen_text, ReadFileToString(gen_path));
    Status s = ApplyGenerationConfig(gen_text, &config.value());
    if (!s.ok()) return s.WithContext(gen_path);
  }
  return config;
}

}  // namespace kiln
