#include "workflow/nodes/model_endpoint.h"

#include "workflow/services.h"

namespace kiln::workflow {

StatusOr<ModelEndpoints> ModelEndpoints::FromSpec(const NodeSpec& spec, NodeFields& f) {
  ModelEndpoints e;
  e.chat_ = spec.type == "llm";
  ModelTarget primary;
  KILN_ASSIGN_OR_RETURN(primary.model, f.String("model", false));
  KILN_ASSIGN_OR_RETURN(primary.base_url, f.String("base_url", false));
  KILN_ASSIGN_OR_RETURN(primary.api_key, f.String("api_key", false));
  if (!primary.base_url.empty() && !HasTemplateSyntax(primary.base_url)) {
    auto url = ParseHttpUrl(primary.base_url);
    if (!url.ok()) return f.Error("base_url", url.status().message());
  }
  e.targets_.push_back(primary);
  for (size_t i = 0; i < spec.fallback.models.size(); ++i) {
    const Json& m = spec.fallback.models[i];
    const std::string field = "fallback.models[" + std::to_string(i) + "]";
    ModelTarget t = primary;
    for (auto it = m.begin(); it != m.end(); ++it) {
      if (!it->is_string()) return f.Error(field + "." + it.key(), "must be a string");
      const std::string v = it->get<std::string>();
      if (it.key() == "model") {
        t.model = v;
      } else if (it.key() == "base_url") {
        if (!v.empty() && !HasTemplateSyntax(v)) {
          auto url = ParseHttpUrl(v);
          if (!url.ok()) return f.Error(field + ".base_url", url.status().message());
        }
        t.base_url = v;
      } else if (it.key() == "api_key") {
        t.api_key = v;
      } else {
        return f.Error(field + "." + it.key(), "unknown field (expected model, base_url, api_key)");
      }
    }
    e.targets_.push_back(std::move(t));
  }
  for (size_t i = 0; i < e.targets_.size(); ++i) {
    const std::string field =
        i == 0 ? "base_url" : "fallback.models[" + std::to_string(i - 1) + "].base_url";
    KILN_ASSIGN_OR_RETURN(Template t, f.CompileAt(field, e.targets_[i].base_url));
    e.urls_.push_back(std::move(t));
  }
  return e;
}

std::string ModelEndpoints::Name(int variant) const {
  if (variant == 0) return "primary";
  const ModelTarget& t = targets_[static_cast<size_t>(variant)];
  return "fallback:" + (t.model.empty() ? std::to_string(variant) : t.model);
}

StatusOr<ModelTarget> ModelEndpoints::Resolve(const NodeContext& ctx) const {
  ModelTarget t = targets_.at(static_cast<size_t>(ctx.variant));
  KILN_ASSIGN_OR_RETURN(t.base_url, urls_.at(static_cast<size_t>(ctx.variant)).Render(*ctx.vars));
  const ServicesOptions& d = ctx.services->options();
  if (t.base_url.empty() && chat_ && d.local_llm != nullptr) return t;  // in-process
  if (t.base_url.empty()) t.base_url = d.llm_base_url;
  if (t.api_key.empty() && t.base_url == d.llm_base_url) t.api_key = d.llm_api_key;
  if (t.model.empty()) t.model = d.default_model;
  if (t.base_url.empty()) {
    return Status::FailedPrecondition(
        "no model endpoint: set base_url on the node or give the runner one (--base-url)");
  }
  while (!t.base_url.empty() && t.base_url.back() == '/') t.base_url.pop_back();
  if (t.base_url.size() >= 3 && t.base_url.compare(t.base_url.size() - 3, 3, "/v1") == 0) {
    t.base_url.resize(t.base_url.size() - 3);
  }
  return t;
}

StatusOr<HttpFetchResponse> ModelEndpoints::Post(
    const NodeContext& ctx, const ModelTarget& target, const std::string& path, const Json& body,
    std::function<void(std::string_view)> on_body) const {
  HttpFetchRequest r;
  r.method = "POST";
  r.url = target.base_url + path;
  r.headers.emplace_back("Content-Type", "application/json");
  if (!target.api_key.empty()) r.headers.emplace_back("Authorization", "Bearer " + target.api_key);
  r.body = body.dump();
  r.deadline = ctx.deadline;
  r.cancelled = ctx.cancelled;
  r.on_body = std::move(on_body);
  auto resp = HttpFetch(r);
  if (!resp.ok()) return resp.status().WithContext("model endpoint " + r.url);
  if (resp->status < 200 || resp->status >= 300) {
    std::string message = resp->body.substr(0, 300);
    Json j = Json::parse(resp->body, nullptr, false);
    if (!j.is_discarded() && j.contains("error") && j["error"].is_object() &&
        j["error"].contains("message") && j["error"]["message"].is_string()) {
      message = j["error"]["message"].get<std::string>();
    }
    return Status::Unavailable("model endpoint " + r.url + ": HTTP " +
                               std::to_string(resp->status) + ": " + message);
  }
  return resp;
}

}  // namespace kiln::workflow
