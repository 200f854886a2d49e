// llm: one chat completion from an OpenAI-compatible endpoint (kiln serve or any other).
//
//   system: template            the system prompt
//   history: "{{ inputs.history }}"   a list of {role, content} inserted after the system prompt
//   messages: [{role, content: template}, ...]   or  prompt: template  (one user message)
//   prefill: template           the start of the assistant reply; the model continues it
//                               (continue_final_message), and `text` begins with it
//   sampling: {temperature, top_p, top_k, min_p, max_tokens, seed, stop, presence_penalty,
//              frequency_penalty, repetition_penalty}
//   response_format: {type: json_object} | {type: json_schema, json_schema: {name, schema}}
//   stream: true                text_chunk events while generating (default true)
// Output: {text, content, prefill, finish_reason, model, usage, json (with a response_format)}.
#include <set>

#include "workflow/json_check.h"
#include "workflow/node.h"
#include "workflow/nodes/model_endpoint.h"
#include "workflow/nodes/node_fields.h"
#include "workflow/services.h"
#include "workflow/template.h"

namespace kiln::workflow {
namespace {

struct MessageTemplate {
  std::string role;
  Template content;
};

// Splits an SSE byte stream into `data:` payloads.
class SseReader final {
 public:
  template <typename Fn>
  void Feed(std::string_view bytes, Fn&& on_data) {
    buffer_.append(bytes);
    size_t end;
    while ((end = buffer_.find("\n\n")) != std::string::npos) {
      const std::string event = buffer_.substr(0, end);
      buffer_.erase(0, end + 2);
      size_t pos = 0;
      while (pos < event.size()) {
        size_t nl = event.find('\n', pos);
        if (nl == std::string::npos) nl = event.size();
        std::string_view line(event.data() + pos, nl - pos);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.rfind("data:", 0) == 0) {
          line.remove_prefix(5);
          if (!line.empty() && line.front() == ' ') line.remove_prefix(1);
          on_data(line);
        }
        pos = nl + 1;
      }
    }
  }

 private:
  std::string buffer_;
};

class LlmNode final : public Node {
 public:
  LlmNode(std::string id, ModelEndpoints endpoints)
      : id_(std::move(id)), endpoints_(std::move(endpoints)) {}

  Template system_;
  bool has_system_ = false;
  Template history_;
  bool has_history_ = false;
  std::vector<MessageTemplate> messages_;
  Template prefill_;
  bool has_prefill_ = false;
  Json sampling_ = Json::object();
  Json response_format_;
  Json schema_;  // the json_schema's schema, when given
  bool stream_ = true;

  int num_variants() const override { return endpoints_.size(); }
  std::string VariantName(int i) const override { return endpoints_.Name(i); }

  StatusOr<Json> Run(NodeContext& ctx) const override {
    KILN_ASSIGN_OR_RETURN(ModelTarget target, endpoints_.Resolve(ctx));
    std::string prefill;  // the rendered prefill ("" when none or it rendered empty)
    KILN_ASSIGN_OR_RETURN(Json body, BuildRequest(ctx, target, &prefill));
    ctx.input = body;

    std::string content, finish_reason, error;
    Json usage = Json::object();
    if (target.local()) {
      bool first = true;
      KILN_ASSIGN_OR_RETURN(
          Json reply,
          ctx.services->options().local_llm->Chat(body, ctx, [&](const std::string& piece) {
            if (!stream_ || !ctx.emit) return;
            ctx.emit("text_chunk", Json{{"text", first ? prefill + piece : piece}});
            first = false;
          }));
      content = reply.value("content", "");
      finish_reason = reply.value("finish_reason", "");
      usage = reply.value("usage", Json::object());
      if (!stream_ && ctx.emit) ctx.emit("text_chunk", Json{{"text", prefill + content}});
    } else if (stream_) {
      SseReader sse;
      bool first = true;
      auto on_body = [&](std::string_view bytes) {
        sse.Feed(bytes, [&](std::string_view data) {
          if (data == "[DONE]") return;
          Json chunk = Json::parse(data, nullptr, false);
          if (chunk.is_discarded()) return;
          if (chunk.contains("error")) {
            error = chunk["error"].is_object()
                        ? chunk["error"].value("message", chunk["error"].dump())
                        : chunk["error"].dump();
            return;
          }
          if (chunk.contains("usage") && chunk["usage"].is_object()) usage = chunk["usage"];
          if (!chunk.contains("choices") || !chunk["choices"].is_array() ||
              chunk["choices"].empty()) {
            return;
          }
          const Json& choice = chunk["choices"][0];
          if (choice.contains("delta") && choice["delta"].contains("content") &&
              choice["delta"]["content"].is_string()) {
            std::string piece = choice["delta"]["content"].get<std::string>();
            content += piece;
            if (ctx.emit) {
              // The prefill is the start of the reply: streamed first, as the reply's first chunk.
              if (first && !prefill.empty()) piece = prefill + piece;
              first = false;
              if (!piece.empty()) ctx.emit("text_chunk", Json{{"text", piece}});
            }
          }
          if (choice.contains("finish_reason") && choice["finish_reason"].is_string()) {
            finish_reason = choice["finish_reason"].get<std::string>();
          }
        });
      };
      KILN_ASSIGN_OR_RETURN(HttpFetchResponse resp,
                            endpoints_.Post(ctx, target, "/v1/chat/completions", body, on_body));
      (void)resp;
      if (!error.empty()) return Status::Unavailable("model stream error: " + error);
    } else {
      KILN_ASSIGN_OR_RETURN(HttpFetchResponse resp,
                            endpoints_.Post(ctx, target, "/v1/chat/completions", body));
      Json j = Json::parse(resp.body, nullptr, false);
      if (j.is_discarded() || !j.contains("choices") || !j["choices"].is_array() ||
          j["choices"].empty()) {
        return Status::Unavailable("model endpoint returned no choices: " +
                                   resp.body.substr(0, 200));
      }
      const Json& choice = j["choices"][0];
      if (choice.contains("message") && choice["message"].contains("content") &&
          choice["message"]["content"].is_string()) {
        content = choice["message"]["content"].get<std::string>();
      }
      finish_reason = choice.value("finish_reason", Json("")).is_string()
                          ? choice.value("finish_reason", std::string())
                          : "";
      if (j.contains("usage") && j["usage"].is_object()) usage = j["usage"];
      if (ctx.emit) ctx.emit("text_chunk", Json{{"text", prefill + content}});
    }
    if (usage.contains("total_tokens") && usage["total_tokens"].is_number_integer()) {
      ctx.num_tokens += usage["total_tokens"].get<int64_t>();
    } else if (usage.contains("completion_tokens") &&
               usage["completion_tokens"].is_number_integer()) {
      ctx.num_tokens += usage["completion_tokens"].get<int64_t>();
    }
    Json out = {{"text", prefill + content},      {"content", content},    {"prefill", prefill},
                {"finish_reason", finish_reason}, {"model", target.model}, {"usage", usage}};
    if (!response_format_.is_null()) {
      Json parsed = Json::parse(prefill + content, nullptr, false);
      if (parsed.is_discarded()) {
        return Status::Unavailable("the model's reply is not valid JSON (finish_reason '" +
                                   finish_reason + "'): " + (prefill + content).substr(0, 200));
      }
      if (!schema_.is_null()) {
        const std::string problem = CheckJsonSchema(parsed, schema_);
        if (!problem.empty()) {
          return Status::Unavailable("the model's reply does not match the schema: " + problem);
        }
      }
      out["json"] = std::move(parsed);
    }
    return out;
  }

 private:
  // The chat request; *prefill receives the rendered prefill, which (when not empty) is also the
  // request's final assistant message.
  StatusOr<Json> BuildRequest(const NodeContext& ctx, const ModelTarget& target,
                              std::string* prefill) const {
    Json messages = Json::array();
    if (has_system_) {
      KILN_ASSIGN_OR_RETURN(std::string s, system_.Render(*ctx.vars));
      messages.push_back({{"role", "system"}, {"content", std::move(s)}});
    }
    if (has_history_) {
      KILN_ASSIGN_OR_RETURN(Json h, history_.RenderValue(*ctx.vars));
      if (h.is_string() && h.get<std::string>().empty()) h = Json::array();
      if (h.is_string()) {
        Json parsed = Json::parse(h.get<std::string>(), nullptr, false);
        if (!parsed.is_discarded()) h = std::move(parsed);
      }
      if (!h.is_array()) {
        return Status::InvalidArgument("history must render to a list of {role, content}");
      }
      for (const auto& m : h) {
        if (!m.is_object() || !m.contains("role") || !m["role"].is_string() ||
            !m.contains("content")) {
          return Status::InvalidArgument("history entries must be {role, content} objects");
        }
        messages.push_back({{"role", m["role"]}, {"content", m["content"]}});
      }
    }
    for (const auto& m : messages_) {
      KILN_ASSIGN_OR_RETURN(std::string c, m.content.Render(*ctx.vars));
      messages.push_back({{"role", m.role}, {"content", std::move(c)}});
    }
    if (messages.empty()) {
      return Status::InvalidArgument(
          "no messages to send: the history rendered to an empty list (give 'prompt' or "
          "'messages' as well)");
    }
    Json body = {{"messages", std::move(messages)}, {"stream", stream_}};
    if (!target.model.empty()) body["model"] = target.model;
    for (auto it = sampling_.begin(); it != sampling_.end(); ++it) body[it.key()] = it.value();
    if (stream_) body["stream_options"] = {{"include_usage", true}};
    if (!response_format_.is_null()) body["response_format"] = response_format_;
    if (has_prefill_) {
      KILN_ASSIGN_OR_RETURN(*prefill, prefill_.Render(*ctx.vars));
      if (!prefill->empty()) {
        body["messages"].push_back({{"role", "assistant"}, {"content", *prefill}});
        body["continue_final_message"] = true;
        body["add_generation_prompt"] = false;
      }
    }
    return body;
  }

  std::string id_;
  ModelEndpoints endpoints_;
};

Status ParseSampling(NodeFields& f, Json* out) {
  const Json* s = f.Raw("sampling");
  if (s == nullptr) return Status::Ok();
  if (!s->is_object()) return f.Error("sampling", "must be an object");
  static const std::set<std::string> kNumbers = {"temperature",
                                                 "top_p",
                                                 "top_k",
                                                 "min_p",
                                                 "max_tokens",
                                                 "seed",
                                                 "presence_penalty",
                                                 "frequency_penalty",
                                                 "repetition_penalty"};
  for (auto it = s->begin(); it != s->end(); ++it) {
    const std::string field = "sampling." + it.key();
    if (kNumbers.count(it.key())) {
      if (!it->is_number()) return f.Error(field, "must be a number");
      if ((it.key() == "max_tokens" || it.key() == "seed" || it.key() == "top_k") &&
          !it->is_number_integer()) {
        return f.Error(field, "must be an integer");
      }
      if (it.key() == "max_tokens" && it->get<int64_t>() < 1) return f.Error(field, "must be >= 1");
      if (it.key() == "temperature" && (it->get<double>() < 0 || it->get<double>() > 2)) {
        return f.Error(field, "must be in [0, 2]");
      }
    } else if (it.key() == "stop") {
      if (!it->is_string() && !it->is_array()) return f.Error(field, "must be a string or a list");
    } else {
      return f.Error(field, "unknown sampling parameter");
    }
    (*out)[it.key()] = it.value();
  }
  return Status::Ok();
}

Status ParseResponseFormat(NodeFields& f, Json* format, Json* schema) {
  const Json* rf = f.Raw("response_format");
  if (rf == nullptr) return Status::Ok();
  if (rf->is_string()) {
    if (*rf != "json_object" && *rf != "text") {
      return f.Error("response_format", "must be text, json_object or {type: json_schema, ...}");
    }
    if (*rf == "json_object") *format = {{"type", "json_object"}};
    return Status::Ok();
  }
  if (!rf->is_object() || !rf->contains("type") || !(*rf)["type"].is_string()) {
    return f.Error("response_format.type", "is required (json_object or json_schema)");
  }
  const std::string type = (*rf)["type"].get<std::string>();
  if (type == "text") return Status::Ok();
  if (type == "json_object") {
    *format = {{"type", "json_object"}};
    return Status::Ok();
  }
  if (type != "json_schema") {
    return f.Error("response_format.type", "must be text, json_object or json_schema");
  }
  Json js = rf->value("json_schema", Json());
  if (js.is_null() && rf->contains("schema"))
    js = {{"name", "output"}, {"schema", (*rf)["schema"]}};
  if (!js.is_object() || !js.contains("schema") || !js["schema"].is_object()) {
    return f.Error("response_format.json_schema.schema", "a JSON Schema object is required");
  }
  if (!js.contains("name")) js["name"] = "output";
  *schema = js["schema"];
  *format = {{"type", "json_schema"}, {"json_schema", js}};
  return Status::Ok();
}

}  // namespace

StatusOr<std::unique_ptr<Node>> CreateLlmNode(const NodeSpec& spec, NodeFields& f) {
  KILN_ASSIGN_OR_RETURN(ModelEndpoints endpoints, ModelEndpoints::FromSpec(spec, f));
  auto node = std::make_unique<LlmNode>(spec.id, std::move(endpoints));
  if (f.Raw("system") != nullptr) {
    KILN_ASSIGN_OR_RETURN(node->system_, f.TemplateField("system", true));
    node->has_system_ = true;
  }
  if (f.Raw("history") != nullptr) {
    KILN_ASSIGN_OR_RETURN(node->history_, f.TemplateField("history", true));
    node->has_history_ = true;
  }
  if (const Json* msgs = f.Raw("messages")) {
    if (!msgs->is_array()) return f.Error("messages", "must be a list of {role, content}");
    for (size_t i = 0; i < msgs->size(); ++i) {
      const Json& m = (*msgs)[i];
      const std::string field = "messages[" + std::to_string(i) + "]";
      if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
        return f.Error(field + ".role", "a role (system, user, assistant) is required");
      }
      const std::string role = m["role"].get<std::string>();
      if (role != "system" && role != "user" && role != "assistant" && role != "tool") {
        return f.Error(field + ".role", "must be system, user, assistant or tool");
      }
      if (!m.contains("content") || !m["content"].is_string()) {
        return f.Error(field + ".content", "a string template is required");
      }
      KILN_ASSIGN_OR_RETURN(Template t,
                            f.CompileAt(field + ".content", m["content"].get<std::string>()));
      node->messages_.push_back({role, std::move(t)});
    }
  }
  if (f.Raw("prompt") != nullptr) {
    KILN_ASSIGN_OR_RETURN(Template t, f.TemplateField("prompt", true));
    node->messages_.push_back({"user", std::move(t)});
  }
  if (f.Raw("prefill") != nullptr) {
    KILN_ASSIGN_OR_RETURN(node->prefill_, f.TemplateField("prefill", true));
    node->has_prefill_ = true;
  }
  KILN_RETURN_IF_ERROR(ParseSampling(f, &node->sampling_));
  KILN_RETURN_IF_ERROR(ParseResponseFormat(f, &node->response_format_, &node->schema_));
  KILN_ASSIGN_OR_RETURN(node->stream_, f.Bool("stream", true));
  KILN_RETURN_IF_ERROR(f.CheckUnknown());  // a misspelt field explains a missing one
  if (node->messages_.empty() && !node->has_history_) {
    return f.Error("messages",
                   "the node sends no messages: give 'prompt', 'messages' or 'history'");
  }
  return std::unique_ptr<Node>(std::move(node));
}

}  // namespace kiln::workflow
