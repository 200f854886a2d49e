#include "server/openai_protocol.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/utf8_encode.h"

namespace kiln::server {
namespace {

constexpr int kMaxN = 128;
constexpr int kMaxTopLogprobs = 20;

std::string TypeName(const json& j) {
  switch (j.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "boolean";
    case json::value_t::string:
      return "string";
    case json::value_t::array:
      return "array";
    case json::value_t::object:
      return "object";
    case json::value_t::number_float:
      return "number";
    default:
      return "integer";
  }
}

// Typed, range-checked reads of optional fields of a request object. A JSON null counts as
// absent. The first failure is kept in error(); later reads are no-ops.
class FieldReader final {
 public:
  explicit FieldReader(const json& obj) : obj_(obj) {}

  const json* Get(const char* name) {
    if (error_) return nullptr;
    auto it = obj_.find(name);
    if (it == obj_.end() || it->is_null()) return nullptr;
    return &*it;
  }
  bool Has(const char* name) { return Get(name) != nullptr; }

  void Fail(std::string message, const char* param) {
    if (!error_) error_ = ApiError::BadRequest(std::move(message), param);
  }
  void WrongType(const char* name, const char* expected, const json& got) {
    Fail("'" + std::string(name) + "' must be " + expected + ", got " + TypeName(got), name);
  }

  // Reads a number into *out; lo/hi are inclusive bounds unless `lo_open`.
  bool Float(const char* name, double lo, double hi, float* out, bool lo_open = false) {
    const json* v = Get(name);
    if (v == nullptr) return false;
    if (!v->is_number()) {
      WrongType(name, "a number", *v);
      return false;
    }
    const double x = v->get<double>();
    // (an open bound is checked after rounding to float too: top_p 1e-50 becomes 0)
    if (!std::isfinite(x) || x < lo || x > hi ||
        (lo_open && (x == lo || static_cast<float>(x) == static_cast<float>(lo)))) {
      Fail("'" + std::string(name) + "' must be in " + (lo_open ? "(" : "[") + Num(lo) + ", " +
               Num(hi) + "], got " + Num(x),
           name);
      return false;
    }
    *out = static_cast<float>(x);
    return true;
  }

  bool Int(const char* name, int64_t lo, int64_t hi, int64_t* out) {
    const json* v = Get(name);
    if (v == nullptr) return false;
    if (!v->is_number_integer()) {
      WrongType(name, "an integer", *v);
      return false;
    }
    if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(hi)) {
      Fail("'" + std::string(name) + "' must be in [" + std::to_string(lo) + ", " +
               std::to_string(hi) + "], got " + std::to_string(v->get<uint64_t>()),
           name);
      return false;
    }
    const int64_t x = v->get<int64_t>();
    if (x < lo || x > hi) {
      Fail("'" + std::string(name) + "' must be in [" + std::to_string(lo) + ", " +
               std::to_string(hi) + "], got " + std::to_string(x),
           name);
      return false;
    }
    *out = x;
    return true;
  }
  bool Int(const char* name, int64_t lo, int64_t hi, int* out) {
    int64_t x = 0;
    if (!Int(name, lo, hi, &x)) return false;
    *out = static_cast<int>(x);
    return true;
  }

  bool Bool(const char* name, bool* out) {
    const json* v = Get(name);
    if (v == nullptr) return false;
    if (!v->is_boolean()) {
      WrongType(name, "a boolean", *v);
      return false;
    }
    *out = v->get<bool>();
    return true;
  }

  bool String(const char* name, std::string* out) {
    const json* v = Get(name);
    if (v == nullptr) return false;
    if (!v->is_string()) {
      WrongType(name, "a string", *v);
      return false;
    }
    *out = v->get<std::string>();
    return true;
  }

  bool Object(const char* name, const json** out) {
    const json* v = Get(name);
    if (v == nullptr) return false;
    if (!v->is_object()) {
      WrongType(name, "an object", *v);
      return false;
    }
    *out = v;
    return true;
  }

  // A list of non-negative integers.
  bool IdList(const char* name, std::vector<int32_t>* out) {
    const json* v = Get(name);
    if (v == nullptr) return false;
    if (!v->is_array()) {
      WrongType(name, "an array of integers", *v);
      return false;
    }
    for (const auto& e : *v) {
      if (!e.is_number_integer() || e.get<int64_t>() < 0 ||
          e.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
        Fail("'" + std::string(name) + "' must contain non-negative token ids", name);
        return false;
      }
      out->push_back(static_cast<int32_t>(e.get<int64_t>()));
    }
    return true;
  }

  const std::optional<ApiError>& error() const { return error_; }

 private:
  static std::string Num(double x) {
    if (x == std::floor(x) && std::fabs(x) < 1e15) return std::to_string(static_cast<int64_t>(x));
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%g", x);
    return buf;
  }

  const json& obj_;
  std::optional<ApiError> error_;
};

// Fields shared by chat and completions.
void ParseCommon(FieldReader& r, const json& body, GenerateRequest* out) {
  r.String("model", &out->model);
  r.String("user", &out->user);
  r.String("cache_salt", &out->cache_salt);
  SamplingParams& s = out->sampling;
  r.Float("temperature", 0.0, 100.0, &s.temperature);
  r.Float("top_p", 0.0, 1.0, &s.top_p, /*lo_open=*/true);
  int64_t top_k = 0;
  if (r.Int("top_k", -1, std::numeric_limits<int32_t>::max(), &top_k)) {
    s.top_k = static_cast<int>(top_k);
  }
  r.Float("min_p", 0.0, 1.0, &s.min_p);
  r.Float("presence_penalty", -2.0, 2.0, &s.presence_penalty);
  r.Float("frequency_penalty", -2.0, 2.0, &s.frequency_penalty);
  r.Float("repetition_penalty", 0.0, 100.0, &s.repetition_penalty, /*lo_open=*/true);
  int64_t seed = 0;
  if (r.Int("seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(),
            &seed)) {
    s.seed = static_cast<uint64_t>(seed);
  }
  r.Int("n", 1, kMaxN, &out->n);
  if (const json* best_of = r.Get("best_of")) {
    if (!best_of->is_number_integer() || best_of->get<int64_t>() != out->n) {
      r.Fail("'best_of' other than n is not supported", "best_of");
    }
  }
  r.Int("min_tokens", 0, std::numeric_limits<int32_t>::max(), &s.min_tokens);
  r.Bool("ignore_eos", &s.ignore_eos);
  r.IdList("stop_token_ids", &s.stop_token_ids);
  r.Bool("skip_special_tokens", &out->skip_special_tokens);
  r.Bool("include_stop_str_in_output", &out->include_stop_str_in_output);
  r.Bool("stream", &out->stream);
  const json* stream_options = nullptr;
  if (r.Object("stream_options", &stream_options)) {
    FieldReader so(*stream_options);
    so.Bool("include_usage", &out->include_usage);
    if (so.error()) r.Fail("stream_options." + so.error()->message, "stream_options");
    // Only include_usage is implemented: anything else (vLLM's continuous_usage_stats) would be
    // accepted and ignored.
    for (auto it = stream_options->begin(); it != stream_options->end(); ++it) {
      if (it.key() == "include_usage") continue;
      const bool noop = it->is_null() || (it->is_boolean() && !it->get<bool>());
      if (!noop) {
        r.Fail("'stream_options." + it.key() + "' is not supported", "stream_options");
        break;
      }
    }
  }
  if (const json* stop = r.Get("stop")) {
    if (stop->is_string()) {
      out->stop.push_back(stop->get<std::string>());
    } else if (stop->is_array()) {
      for (const auto& e : *stop) {
        if (!e.is_string()) {
          r.Fail("'stop' must be a string or an array of strings", "stop");
          break;
        }
        out->stop.push_back(e.get<std::string>());
      }
    } else {
      r.WrongType("stop", "a string or an array of strings", *stop);
    }
  }
  if (const json* bias = r.Get("logit_bias")) {
    if (!bias->is_object()) {
      r.WrongType("logit_bias", "an object", *bias);
    } else if (!bias->empty()) {
      r.Fail("'logit_bias' is not supported", "logit_bias");
    }
  }
  // Waiting-queue order, lower first (vLLM's priority scheduling).
  int64_t priority = 0;
  if (r.Int("priority", std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max(),
            &priority)) {
    out->priority = static_cast<int>(priority);
  }
  if (out->stream == false && r.Get("stream_options") != nullptr)
    r.Fail("'stream_options' is only allowed when 'stream' is true", "stream_options");
  // vLLM request fields kiln does not implement: refused when they would change the result, never
  // accepted and ignored. Each is fine absent, null, or at its no-op value.
  auto refuse_unless = [&](const char* name, auto&& is_noop) {
    if (const json* v = r.Get(name); v != nullptr && !v->is_null() && !is_noop(*v))
      r.Fail(std::string("'") + name + "' is not supported", name);
  };
  auto empty_array = [](const json& v) { return v.is_array() && v.empty(); };
  auto is_false = [](const json& v) { return v.is_boolean() && !v.get<bool>(); };
  auto is_true = [](const json& v) { return v.is_boolean() && v.get<bool>(); };
  refuse_unless("allowed_token_ids", empty_array);
  refuse_unless("bad_words", empty_array);
  if (const json* v = r.Get("prompt_logprobs"); v != nullptr && !v->is_null()) {
    r.Fail(
        "'prompt_logprobs' is not supported: a completions request with 'echo': true and "
        "'logprobs' returns the prompt's logprobs",
        "prompt_logprobs");
  }
  refuse_unless("truncate_prompt_tokens", [](const json&) { return false; });
  refuse_unless("use_beam_search", is_false);
  refuse_unless("return_tokens_as_token_ids", is_false);
  refuse_unless("return_token_ids", is_false);
  refuse_unless("guided_whitespace_pattern", [](const json&) { return false; });
  refuse_unless("request_id", [](const json&) { return false; });
  // OpenAI fields that change the result and are not implemented: the deprecated functions API
  // (use tools), audio output, predicted outputs.
  refuse_unless("functions", empty_array);
  refuse_unless("function_call", [](const json& v) { return v == "none"; });
  refuse_unless("audio", [](const json&) { return false; });
  refuse_unless("prediction", [](const json&) { return false; });
  refuse_unless("modalities", [](const json& v) { return v == json::array({"text"}); });
  refuse_unless("spaces_between_special_tokens", is_true);
  if (const json* ids = r.Get("logprob_token_ids")) {
    if (!ids->is_array()) {
      r.WrongType("logprob_token_ids", "an array of token ids or strings", *ids);
    } else {
      for (const auto& e : *ids) {
        if (e.is_string()) {
          out->logprob_token_strings.push_back(e.get<std::string>());
        } else if (e.is_number_integer() && e.get<int64_t>() >= 0 &&
                   e.get<int64_t>() <= std::numeric_limits<int32_t>::max()) {
          out->logprob_token_ids.push_back(static_cast<int32_t>(e.get<int64_t>()));
        } else {
          r.Fail("'logprob_token_ids' must contain token ids or strings", "logprob_token_ids");
          break;
        }
      }
    }
  }

  // Structured output: OpenAI response_format, vLLM guided_* and structured_outputs.
  ResponseFormat& rf = s.response_format;
  int num_formats = 0;
  const json* response_format = nullptr;
  if (r.Object("response_format", &response_format)) {
    const auto type_it = response_format->find("type");
    const std::string type = type_it != response_format->end() && type_it->is_string()
                                 ? type_it->get<std::string>()
                                 : "";
    out->structured_param = "response_format";
    if (type == "text") {
    } else if (type == "json_object") {
      rf.type = ResponseFormat::Type::kJsonObject;
      ++num_formats;
    } else if (type == "json_schema") {
      const auto js = response_format->find("json_schema");
      if (js == response_format->end() || !js->is_object() || !js->contains("schema") ||
          !(*js)["schema"].is_object()) {
        r.Fail("'response_format.json_schema.schema' must be an object", "response_format");
      } else {
        rf.type = ResponseFormat::Type::kJsonSchema;
        rf.json_schema = DumpJson((*js)["schema"]);
        ++num_formats;
      }
    } else {
      r.Fail("'response_format.type' must be one of text, json_object, json_schema",
             "response_format");
    }
  }
  auto schema_text = [&](const json& v, const char* name) {
    if (v.is_string()) {
      const std::string& text = v.get_ref<const std::string&>();
      if (JsonNestingDepth(text, kMaxJsonDepth) > kMaxJsonDepth) {
        r.Fail(std::string("'") + name + "' nests arrays/objects more than " +
                   std::to_string(kMaxJsonDepth) + " levels deep",
               name);
        return;
      }
      json parsed = json::parse(text, nullptr, false);
      if (parsed.is_discarded() || !parsed.is_object()) {
        r.Fail(std::string("'") + name + "' must be a JSON schema", name);
        return;
      }
      rf.json_schema = DumpJson(parsed);
    } else if (v.is_object()) {
      rf.json_schema = DumpJson(v);
    } else {
      r.WrongType(name, "an object", v);
      return;
    }
    rf.type = ResponseFormat::Type::kJsonSchema;
    out->structured_param = name;
    ++num_formats;
  };
  auto choice_list = [&](const json& v, const char* name) {
    if (!v.is_array() || v.empty()) {
      r.Fail(std::string("'") + name + "' must be a non-empty array of strings", name);
      return;
    }
    for (const auto& e : v) {
      if (!e.is_string()) {
        r.Fail(std::string("'") + name + "' must be a non-empty array of strings", name);
        return;
      }
      rf.choices.push_back(e.get<std::string>());
    }
    rf.type = ResponseFormat::Type::kChoice;
    out->structured_param = name;
    ++num_formats;
  };
  if (const json* v = r.Get("guided_json")) schema_text(*v, "guided_json");
  std::string text;
  if (r.String("guided_regex", &text)) {
    out->structured_param = "guided_regex";
    rf.type = ResponseFormat::Type::kRegex;
    rf.regex = text;
    ++num_formats;
  }
  if (const json* v = r.Get("guided_choice")) choice_list(*v, "guided_choice");
  if (r.String("guided_grammar", &text)) {
    out->structured_param = "guided_grammar";
    rf.type = ResponseFormat::Type::kGrammar;
    rf.grammar = text;
    ++num_formats;
  }
  const json* so = nullptr;
  if (r.Object("structured_outputs", &so)) {
    FieldReader sr(*so);
    if (const json* v = sr.Get("json")) schema_text(*v, "structured_outputs.json");
    if (sr.String("regex", &text)) {
      out->structured_param = "structured_outputs.regex";
      rf.type = ResponseFormat::Type::kRegex;
      rf.regex = text;
      ++num_formats;
    }
    if (const json* v = sr.Get("choice")) choice_list(*v, "structured_outputs.choice");
    if (sr.String("grammar", &text)) {
      out->structured_param = "structured_outputs.grammar";
      rf.type = ResponseFormat::Type::kGrammar;
      rf.grammar = text;
      ++num_formats;
    }
    bool json_object = false;
    if (sr.Bool("json_object", &json_object) && json_object) {
      out->structured_param = "structured_outputs.json_object";
      rf.type = ResponseFormat::Type::kJsonObject;
      ++num_formats;
    }
    if (sr.error()) r.Fail("structured_outputs: " + sr.error()->message, "structured_outputs");
  }
  if (num_formats > 1) {
    r.Fail(
        "only one kind of structured output (response_format, guided_*, structured_outputs) "
        "may be given",
        "response_format");
  }
  (void)body;
}

// Normalizes one message's content: a string, null, or an array of {type: "text", text} parts
// (joined with "\n").
std::optional<ApiError> NormalizeContent(json* message, size_t i) {
  const std::string param = "messages[" + std::to_string(i) + "].content";
  auto it = message->find("content");
  if (it == message->end() || it->is_null() || it->is_string()) return std::nullopt;
  if (!it->is_array()) {
    return ApiError::BadRequest("'" + param + "' must be a string or an array of content parts",
                                param);
  }
  std::string joined;
  bool first = true;
  for (const auto& part : *it) {
    if (!part.is_object() || !part.contains("type") || !part["type"].is_string()) {
      return ApiError::BadRequest("'" + param + "' parts must be objects with a 'type'", param);
    }
    const std::string type = part["type"].get<std::string>();
    if (type != "text") {
      return ApiError::BadRequest("content part type '" + type + "' is not supported", param);
    }
    if (!part.contains("text") || !part["text"].is_string()) {
      return ApiError::BadRequest("'" + param + "' text parts need a string 'text'", param);
    }
    if (!first) joined += "\n";
    joined += part["text"].get<std::string>();
    first = false;
  }
  *it = joined;
  return std::nullopt;
}

}  // namespace

std::string DumpJson(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

int JsonNestingDepth(std::string_view text, int limit) {
  int depth = 0, max_depth = 0;
  bool in_string = false, escaped = false;
  for (const char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) {
        max_depth = depth;
        if (max_depth > limit) return limit + 1;
      }
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return max_depth;
}

std::optional<ApiError> ReadOptionalString(const json& body, const char* name, std::string* out) {
  FieldReader r(body);
  r.String(name, out);
  return r.error();
}

std::optional<ApiError> ReadOptionalBool(const json& body, const char* name, bool* out) {
  FieldReader r(body);
  r.Bool(name, out);
  return r.error();
}

std::optional<ApiError> ParseJsonBody(std::string_view text, json* out) {
  if (JsonNestingDepth(text, kMaxJsonDepth) > kMaxJsonDepth) {
    return ApiError::BadRequest("the request body nests arrays/objects more than " +
                                std::to_string(kMaxJsonDepth) + " levels deep");
  }
  json parsed = json::parse(text.begin(), text.end(), nullptr, false);
  if (parsed.is_discarded()) {
    return ApiError::BadRequest("the request body is not valid JSON");
  }
  if (!parsed.is_object()) {
    return ApiError::BadRequest("the request body must be a JSON object");
  }
  *out = std::move(parsed);
  return std::nullopt;
}

std::optional<ApiError> ParseChatRequest(const json& body, GenerateRequest* out) {
  *out = GenerateRequest();
  out->kind = ApiKind::kChat;
  out->add_special_tokens = false;
  FieldReader r(body);
  ParseCommon(r, body, out);
  // The reply starts with the continued final assistant message (continue_final_message).
  r.Bool("echo", &out->echo);

  const json* messages = r.Get("messages");
  if (r.error()) return r.error();
  if (messages == nullptr) return ApiError::BadRequest("'messages' is required", "messages");
  if (!messages->is_array() || messages->empty()) {
    return ApiError::BadRequest("'messages' must be a non-empty array", "messages");
  }
  out->messages = *messages;
  for (size_t i = 0; i < out->messages.size(); ++i) {
    json& m = out->messages[i];
    const std::string param = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) return ApiError::BadRequest("'" + param + "' must be an object", param);
    if (!m.contains("role") || !m["role"].is_string()) {
      return ApiError::BadRequest("'" + param + ".role' must be a string", param + ".role");
    }
    if (auto e = NormalizeContent(&m, i)) return e;
  }

  // Both are read (each is checked); max_completion_tokens wins when both are given.
  int max_tokens = 0, max_completion_tokens = 0;
  const bool has_max_tokens =
      r.Int("max_tokens", 1, std::numeric_limits<int32_t>::max(), &max_tokens);
  const bool has_max_completion_tokens = r.Int(
      "max_completion_tokens", 1, std::numeric_limits<int32_t>::max(), &max_completion_tokens);
  if (has_max_completion_tokens || has_max_tokens) {
    out->sampling.max_tokens = has_max_completion_tokens ? max_completion_tokens : max_tokens;
    out->max_tokens_set = true;
  }
  bool logprobs = false;
  r.Bool("logprobs", &logprobs);
  out->logprobs = logprobs;
  if (r.Int("top_logprobs", 0, kMaxTopLogprobs, &out->top_logprobs) && !logprobs) {
    r.Fail("'top_logprobs' requires 'logprobs': true", "top_logprobs");
  }

  // Chat template options (vLLM extras) and assistant prefill.
  ChatTemplateOptions& co = out->chat_options;
  bool add_generation_prompt_set = r.Bool("add_generation_prompt", &co.add_generation_prompt);
  bool continue_set = r.Bool("continue_final_message", &co.continue_final_message);
  r.Bool("add_special_tokens", &out->add_special_tokens);
  const json* kwargs = nullptr;
  if (r.Object("chat_template_kwargs", &kwargs)) co.extra_kwargs = *kwargs;
  r.String("chat_template", &co.chat_template);
  if (const json* tools = r.Get("tools")) {
    if (!tools->is_array())
      r.WrongType("tools", "an array", *tools);
    else
      co.tools = *tools;
  }
  // Tools are rendered into the prompt by the chat template; tool calls are not parsed out of
  // the output (they come back as text in `content`). So only the tool choices that need no
  // parsing or forcing are accepted: "none" and "auto".
  if (const json* choice = r.Get("tool_choice")) {
    if (!choice->is_string() || (*choice != "none" && *choice != "auto")) {
      r.Fail(
          "'tool_choice' must be \"none\" or \"auto\": forcing a tool call (\"required\" or a "
          "named function) is not supported",
          "tool_choice");
    }
  }
  bool parallel_tool_calls = true;
  r.Bool("parallel_tool_calls", &parallel_tool_calls);  // no effect: tool calls are not parsed
  if (const json* docs = r.Get("documents")) {
    if (!docs->is_array())
      r.WrongType("documents", "an array", *docs);
    else
      co.documents = *docs;
  }
  if (r.error()) return r.error();

  const json& last = out->messages.back();
  const bool last_is_assistant = last["role"] == "assistant";
  const bool partial =
      last_is_assistant && ((last.contains("partial") && last["partial"] == true) ||
                            (last.contains("prefix") && last["prefix"] == true));
  if (partial && !continue_set) {
    co.continue_final_message = true;
    if (!add_generation_prompt_set) co.add_generation_prompt = false;
  }
  if (co.continue_final_message && co.add_generation_prompt) {
    return ApiError::BadRequest(
        "'continue_final_message' and 'add_generation_prompt' cannot both be true",
        "continue_final_message");
  }
  if (co.continue_final_message && !last_is_assistant) {
    return ApiError::BadRequest(
        "'continue_final_message' requires the last message to be from the assistant",
        "continue_final_message");
  }
  return std::nullopt;
}

std::optional<ApiError> ParseCompletionRequest(const json& body, GenerateRequest* out) {
  *out = GenerateRequest();
  out->kind = ApiKind::kCompletion;
  out->add_special_tokens = true;
  out->sampling.max_tokens = 16;
  out->max_tokens_set = true;
  FieldReader r(body);
  ParseCommon(r, body, out);
  r.Bool("add_special_tokens", &out->add_special_tokens);
  r.Bool("echo", &out->echo);
  int max_tokens = 0;
  if (r.Int("max_tokens", 0, std::numeric_limits<int32_t>::max(), &max_tokens)) {
    out->sampling.max_tokens = max_tokens;
  } else if (const auto it = body.find("max_tokens"); it != body.end() && it->is_null()) {
    out->max_tokens_set = false;  // explicit null: as many as fit
  }
  if (r.Int("logprobs", 0, kMaxTopLogprobs, &out->top_logprobs)) out->logprobs = true;
  if (const json* suffix = r.Get("suffix")) {
    if (!suffix->is_string() || !suffix->get<std::string>().empty()) {
      r.Fail("'suffix' is not supported", "suffix");
    }
  }
  const json* prompt = r.Get("prompt");
  if (r.error()) return r.error();
  if (prompt == nullptr) return ApiError::BadRequest("'prompt' is required", "prompt");

  const char* kShape =
      "'prompt' must be a string, an array of strings, an array of token ids, or an array of "
      "token-id arrays";
  auto id_list = [&](const json& arr, std::vector<int32_t>* ids) -> bool {
    for (const auto& e : arr) {
      if (!e.is_number_integer()) return false;
      const int64_t v = e.get<int64_t>();
      if (v < 0 || v > std::numeric_limits<int32_t>::max()) return false;
      ids->push_back(static_cast<int32_t>(v));
    }
    return true;
  };
  if (prompt->is_string()) {
    out->prompts.push_back({true, prompt->get<std::string>(), {}});
  } else if (prompt->is_array() && !prompt->empty()) {
    const json& first = prompt->front();
    if (first.is_string()) {
      for (const auto& e : *prompt) {
        if (!e.is_string()) return ApiError::BadRequest(kShape, "prompt");
        out->prompts.push_back({true, e.get<std::string>(), {}});
      }
    } else if (first.is_number()) {
      PromptSpec p{false, "", {}};
      if (!id_list(*prompt, &p.token_ids)) {
        return ApiError::BadRequest("'prompt' token ids must be non-negative integers", "prompt");
      }
      out->prompts.push_back(std::move(p));
    } else if (first.is_array()) {
      for (const auto& e : *prompt) {
        PromptSpec p{false, "", {}};
        if (!e.is_array() || e.empty()) return ApiError::BadRequest(kShape, "prompt");
        if (!id_list(e, &p.token_ids)) {
          return ApiError::BadRequest("'prompt' token ids must be non-negative integers", "prompt");
        }
        out->prompts.push_back(std::move(p));
      }
    } else {
      return ApiError::BadRequest(kShape, "prompt");
    }
  } else {
    return ApiError::BadRequest(kShape, "prompt");
  }
  const int64_t num_sequences = static_cast<int64_t>(out->prompts.size()) * out->n;
  if (num_sequences > kMaxSequencesPerRequest) {
    return ApiError::BadRequest(
        std::to_string(out->prompts.size()) + " 'prompt' entries × n = " + std::to_string(out->n) +
            " make " + std::to_string(num_sequences) + " sequences; one request may run at most " +
            std::to_string(kMaxSequencesPerRequest),
        out->n > 1 ? "n" : "prompt");
  }
  if (out->echo && out->sampling.max_tokens == 0) return std::nullopt;
  if (out->sampling.max_tokens == 0) {
    return ApiError::BadRequest("'max_tokens' must be at least 1", "max_tokens");
  }
  return std::nullopt;
}

std::optional<ApiError> CheckTokenIds(const std::vector<int32_t>& ids, int vocab_size,
                                      const char* param) {
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size) {
      return ApiError::BadRequest("token id " + std::to_string(id) +
                                      " is outside the vocabulary (size " +
                                      std::to_string(vocab_size) + ")",
                                  param);
    }
  }
  return std::nullopt;
}

std::string EngineErrorParam(const std::string& message) {
  static constexpr std::pair<std::string_view, std::string_view> kFields[] = {
      {"temperature", "temperature"},
      {"top_k", "top_k"},
      {"top_p", "top_p"},
      {"min_p", "min_p"},
      {"repetition_penalty", "repetition_penalty"},
      {"presence_penalty", "presence_penalty"},
      {"frequency_penalty", "frequency_penalty"},
      {"max_tokens", "max_tokens"},
      {"min_tokens", "min_tokens"},
      {"logprobs", "logprobs"},
      {"stop_token_ids", "stop_token_ids"},
      {"chosen_logprob_token_ids", "logprob_token_ids"},
      {"response_format", "response_format"},
  };
  const std::string_view first = std::string_view(message).substr(0, message.find(' '));
  for (const auto& [field, param] : kFields) {
    if (first == field) return std::string(param);
  }
  return "";
}

// ---- responses ---------------------------------------------------------------------------------

std::string TokenDisplay(const Tokenizer& tokenizer, int32_t id) {
  return tokenizer.TokenBytes(id);
}

json RenderUsage(const UsageTotals& usage) {
  return {{"prompt_tokens", usage.prompt_tokens},
          {"completion_tokens", usage.completion_tokens},
          {"total_tokens", usage.prompt_tokens + usage.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", usage.cached_tokens}}}};
}

namespace {

json ByteArray(const std::string& s) {
  json a = json::array();
  for (unsigned char c : s) a.push_back(static_cast<int>(c));
  return a;
}

json ChatTokenEntry(const Tokenizer& tokenizer, const TokenLogprob& t) {
  const std::string text = TokenDisplay(tokenizer, t.token_id);
  return {{"token", text}, {"logprob", t.logprob}, {"bytes", ByteArray(text)}};
}

json RequestedEntries(const Tokenizer& tokenizer, const std::vector<TokenLogprob>& requested) {
  json a = json::array();
  for (const auto& t : requested) {
    a.push_back({{"token_id", t.token_id},
                 {"token", TokenDisplay(tokenizer, t.token_id)},
                 {"logprob", t.logprob}});
  }
  return a;
}

}  // namespace

json RenderChatLogprobs(const std::vector<PositionLogprobs>& positions, const Tokenizer& tokenizer,
                        int top_logprobs) {
  json content = json::array();
  for (const auto& p : positions) {
    json entry = ChatTokenEntry(tokenizer, p.chosen);
    json top = json::array();
    for (size_t i = 0; i < p.top.size() && static_cast<int>(i) < top_logprobs; ++i) {
      top.push_back(ChatTokenEntry(tokenizer, p.top[i]));
    }
    entry["top_logprobs"] = std::move(top);
    if (!p.requested.empty())
      entry["requested_logprobs"] = RequestedEntries(tokenizer, p.requested);
    content.push_back(std::move(entry));
  }
  return {{"content", std::move(content)}};
}

namespace {

// The legacy completions logprobs object, built position by position.
struct CompletionLogprobsBuilder {
  const Tokenizer& tokenizer;
  int top_logprobs;
  json tokens = json::array(), token_logprobs = json::array(), tops = json::array(),
       offsets = json::array(), requested = json::array();
  bool any_requested = false;

  // A position without logprobs (the first prompt token).
  void AddNull(int32_t id, int text_offset) {
    tokens.push_back(TokenDisplay(tokenizer, id));
    token_logprobs.push_back(nullptr);
    tops.push_back(nullptr);
    offsets.push_back(text_offset);
    requested.push_back(json::array());
  }
  void Add(const PositionLogprobs& p, int text_offset) {
    const std::string text = TokenDisplay(tokenizer, p.chosen.token_id);
    tokens.push_back(text);
    token_logprobs.push_back(p.chosen.logprob);
    json top = json::object();
    for (size_t i = 0; i < p.top.size() && static_cast<int>(i) < top_logprobs; ++i) {
      top[TokenDisplay(tokenizer, p.top[i].token_id)] = p.top[i].logprob;
    }
    if (!top.contains(text)) top[text] = p.chosen.logprob;
    tops.push_back(std::move(top));
    offsets.push_back(text_offset);
    requested.push_back(RequestedEntries(tokenizer, p.requested));
    any_requested = any_requested || !p.requested.empty();
  }
  json Take() {
    json out = {{"tokens", std::move(tokens)},
                {"token_logprobs", std::move(token_logprobs)},
                {"top_logprobs", std::move(tops)},
                {"text_offset", std::move(offsets)}};
    if (any_requested) out["requested_logprobs"] = std::move(requested);
    return out;
  }
};

}  // namespace

json RenderEchoedCompletionLogprobs(const std::vector<int32_t>& prompt_token_ids,
                                    const std::vector<PositionLogprobs>& prompt_logprobs,
                                    const std::vector<PositionLogprobs>& generated,
                                    const Tokenizer& tokenizer, int top_logprobs,
                                    int generated_offset) {
  CompletionLogprobsBuilder b{tokenizer, top_logprobs};
  // Prompt offsets: each token's own bytes in characters (a byte piece of a split character
  // counts at its lead byte), shifted so that the prompt ends where the echoed text does
  // (`generated_offset`): what the echoed text lacks at its start (a BOS the tokenizer added, the
  // space SentencePiece prepends) moves the offsets down, clamped at 0.
  std::vector<int> starts(prompt_token_ids.size());
  int chars = 0;
  for (size_t i = 0; i < prompt_token_ids.size(); ++i) {
    starts[i] = chars;
    chars += Utf8CharCount(tokenizer.TokenBytes(prompt_token_ids[i]));
  }
  const int shift = chars - generated_offset;
  for (size_t i = 0; i < prompt_token_ids.size(); ++i) {
    const int offset = std::max(0, starts[i] - shift);
    if (i == 0) {
      b.AddNull(prompt_token_ids[0], offset);
    } else if (i - 1 < prompt_logprobs.size()) {
      b.Add(prompt_logprobs[i - 1], offset);
    } else {
      break;  // (the request ended before its prompt logprobs came)
    }
  }
  for (const auto& p : generated) {
    b.Add(p, generated_offset);
    generated_offset += Utf8CharCount(tokenizer.TokenBytes(p.chosen.token_id));  // characters
  }
  return b.Take();
}

json RenderCompletionLogprobs(const std::vector<PositionLogprobs>& positions,
                              const Tokenizer& tokenizer, int top_logprobs, int text_offset) {
  CompletionLogprobsBuilder b{tokenizer, top_logprobs};
  for (const auto& p : positions) {
    b.Add(p, text_offset);
    text_offset += Utf8CharCount(tokenizer.TokenBytes(p.chosen.token_id));  // characters
  }
  return b.Take();
}

namespace {

json FinishReasonJson(const std::string& reason) {
  return reason.empty() ? json(nullptr) : json(reason);
}

}  // namespace

std::string RenderChatResponse(const ResponseMeta& meta, const GenerateRequest& request,
                               const std::vector<ChoiceResult>& choices, const UsageTotals& usage,
                               const Tokenizer& tokenizer) {
  json out_choices = json::array();
  for (const auto& c : choices) {
    json choice = {{"index", c.index},
                   {"message", {{"role", "assistant"}, {"content", c.text}}},
                   {"logprobs", nullptr},
                   {"finish_reason", FinishReasonJson(c.finish_reason)},
                   {"stop_reason", c.stop_reason}};
    if (request.logprobs) {
      choice["logprobs"] = RenderChatLogprobs(c.logprobs, tokenizer, request.top_logprobs);
    }
    out_choices.push_back(std::move(choice));
  }
  json body = {
      {"id", meta.id},       {"object", "chat.completion"},       {"created", meta.created},
      {"model", meta.model}, {"choices", std::move(out_choices)}, {"usage", RenderUsage(usage)}};
  return DumpJson(body);
}

std::string RenderCompletionResponse(const ResponseMeta& meta, const GenerateRequest& request,
                                     const std::vector<ChoiceResult>& choices,
                                     const UsageTotals& usage, const Tokenizer& tokenizer) {
  json out_choices = json::array();
  for (const auto& c : choices) {
    json choice = {{"index", c.index},
                   {"text", c.text},
                   {"logprobs", nullptr},
                   {"finish_reason", FinishReasonJson(c.finish_reason)},
                   {"stop_reason", c.stop_reason}};
    if (request.logprobs && request.echo) {
      choice["logprobs"] =
          RenderEchoedCompletionLogprobs(c.prompt_token_ids, c.prompt_logprobs, c.logprobs,
                                         tokenizer, request.top_logprobs, c.echo_chars);
    } else if (request.logprobs) {
      choice["logprobs"] = RenderCompletionLogprobs(c.logprobs, tokenizer, request.top_logprobs, 0);
    }
    out_choices.push_back(std::move(choice));
  }
  json body = {
      {"id", meta.id},       {"object", "text_completion"},       {"created", meta.created},
      {"model", meta.model}, {"choices", std::move(out_choices)}, {"usage", RenderUsage(usage)}};
  return DumpJson(body);
}

json StopReason(const GenerateRequest& request, const std::string& matched_stop,
                int32_t stop_token_id) {
  if (!matched_stop.empty()) return matched_stop;
  const auto& ids = request.sampling.stop_token_ids;
  if (stop_token_id >= 0 && std::find(ids.begin(), ids.end(), stop_token_id) != ids.end()) {
    return stop_token_id;
  }
  return nullptr;
}

json RenderStreamChunk(const ResponseMeta& meta, const GenerateRequest& request, int index,
                       bool first, const std::string& delta_text,
                       const std::vector<PositionLogprobs>& logprobs, int text_offset,
                       const std::string& finish_reason, const Tokenizer& tokenizer,
                       const json& stop_reason) {
  json choice = {{"index", index}};
  const bool chat = request.kind == ApiKind::kChat;
  if (chat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!delta_text.empty() || (first && finish_reason.empty())) delta["content"] = delta_text;
    choice["delta"] = std::move(delta);
  } else {
    choice["text"] = delta_text;
  }
  choice["logprobs"] = nullptr;
  if (request.logprobs && !logprobs.empty()) {
    choice["logprobs"] =
        chat ? RenderChatLogprobs(logprobs, tokenizer, request.top_logprobs)
             : RenderCompletionLogprobs(logprobs, tokenizer, request.top_logprobs, text_offset);
  }
  choice["finish_reason"] = FinishReasonJson(finish_reason);
  choice["stop_reason"] = stop_reason;
  json chunk = {{"id", meta.id},
                {"object", chat ? "chat.completion.chunk" : "text_completion"},
                {"created", meta.created},
                {"model", meta.model},
                {"choices", json::array({std::move(choice)})}};
  if (request.include_usage) chunk["usage"] = nullptr;
  return chunk;
}

json RenderUsageChunk(const ResponseMeta& meta, const GenerateRequest& request,
                      const UsageTotals& usage) {
  const bool chat = request.kind == ApiKind::kChat;
  return {{"id", meta.id},
          {"object", chat ? "chat.completion.chunk" : "text_completion"},
          {"created", meta.created},
          {"model", meta.model},
          {"choices", json::array()},
          {"usage", RenderUsage(usage)}};
}

std::string SseEvent(const json& data) { return "data: " + DumpJson(data) + "\n\n"; }
std::string SseDone() { return "data: [DONE]\n\n"; }

}  // namespace kiln::server
