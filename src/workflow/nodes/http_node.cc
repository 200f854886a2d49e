// http and message: the integration points for RPC, storage and messaging services.
//
// http:    method (GET POST PUT PATCH DELETE), url (template), headers {name: template},
//          body (a template string, or a structure whose strings are templates, sent as JSON),
//          accept_status [codes] (default: any 2xx). Output: {status, body, json (when the body is
//          JSON)}. Any other status is an error (so retries and fallbacks apply).
// message: a push to a webhook (e.g. an IM bot): url, headers, and `text` (sent as {"text": ...})
//          or `payload` (a structure of templates). Output: {status, delivered: true}.
#include <strings.h>

#include <set>

#include "workflow/http_client.h"
#include "workflow/node.h"
#include "workflow/nodes/node_factories.h"

namespace kiln::workflow {
namespace {

class HttpNode final : public Node {
 public:
  std::string method_ = "GET";
  Template url_;
  std::vector<std::pair<std::string, Template>> headers_;
  bool has_body_ = false;
  bool body_is_text_ = false;
  Template body_text_;
  TemplateTree body_tree_;
  std::set<int> accept_;
  bool message_ = false;

  StatusOr<Json> Run(NodeContext& ctx) const override {
    HttpFetchRequest r;
    r.method = method_;
    KILN_ASSIGN_OR_RETURN(r.url, url_.Render(*ctx.vars));
    bool has_content_type = false;
    for (const auto& [name, t] : headers_) {
      KILN_ASSIGN_OR_RETURN(std::string v, t.Render(*ctx.vars));
      has_content_type = has_content_type || strcasecmp(name.c_str(), "content-type") == 0;
      r.headers.emplace_back(name, std::move(v));
    }
    if (has_body_) {
      if (body_is_text_) {
        KILN_ASSIGN_OR_RETURN(r.body, body_text_.Render(*ctx.vars));
      } else {
        KILN_ASSIGN_OR_RETURN(Json b, body_tree_.Render(*ctx.vars));
        r.body = b.dump();
        if (!has_content_type) r.headers.emplace_back("Content-Type", "application/json");
      }
    }
    r.deadline = ctx.deadline;
    r.cancelled = ctx.cancelled;
    ctx.input = {{"method", r.method}, {"url", r.url}};
    if (!r.body.empty()) ctx.input["body"] = r.body.size() > 4096 ? r.body.substr(0, 4096) : r.body;
    auto resp = HttpFetch(r);
    if (!resp.ok()) return resp.status().WithContext(r.method + " " + r.url);
    const bool accepted = accept_.empty() ? (resp->status >= 200 && resp->status < 300)
                                          : accept_.count(resp->status) > 0;
    if (!accepted) {
      return Status::Unavailable(r.method + " " + r.url + ": HTTP " + std::to_string(resp->status) +
                                 ": " + resp->body.substr(0, 300));
    }
    if (message_) return Json{{"status", resp->status}, {"delivered", true}};
    Json out = {{"status", resp->status}, {"body", resp->body}};
    Json j = Json::parse(resp->body, nullptr, false);
    if (!j.is_discarded()) out["json"] = std::move(j);
    return out;
  }
};

}  // namespace

StatusOr<std::unique_ptr<Node>> CreateHttpNode(const NodeSpec& spec, NodeFields& f) {
  auto node = std::make_unique<HttpNode>();
  node->message_ = spec.type == "message";
  KILN_ASSIGN_OR_RETURN(node->url_, f.TemplateField("url", true));
  if (node->url_.is_literal()) {
    auto url = ParseHttpUrl(node->url_.source());
    if (!url.ok()) return f.Error("url", url.status().message());
  }
  KILN_ASSIGN_OR_RETURN(node->headers_, f.TemplateMap("headers"));
  if (node->message_) {
    node->method_ = "POST";
    node->has_body_ = true;
    if (f.Raw("text") != nullptr && f.Raw("payload") != nullptr) {
      return f.Error("payload", "give either 'text' or 'payload'");
    }
    if (f.Raw("text") != nullptr) {
      KILN_ASSIGN_OR_RETURN(std::string text, f.String("text", true));
      KILN_ASSIGN_OR_RETURN(Template check, f.CompileAt("text", text));  // records its refs
      (void)check;
      auto t = TemplateTree::Compile(Json{{"text", text}});
      if (!t.ok()) return f.Error("text", t.status().message());
      node->body_tree_ = std::move(*t);
    } else if (f.Raw("payload") != nullptr) {
      KILN_ASSIGN_OR_RETURN(node->body_tree_, f.TreeField("payload", Json()));
    } else {
      return f.Error("text", "a message needs 'text' or 'payload'");
    }
  } else {
    KILN_ASSIGN_OR_RETURN(node->method_,
                          f.Enum("method", {"GET", "POST", "PUT", "PATCH", "DELETE"}, "GET"));
    if (const Json* body = f.Raw("body")) {
      node->has_body_ = true;
      if (body->is_string()) {
        node->body_is_text_ = true;
        KILN_ASSIGN_OR_RETURN(node->body_text_, f.TemplateField("body", true));
      } else {
        KILN_ASSIGN_OR_RETURN(node->body_tree_, f.TreeField("body", Json()));
      }
    }
    if (const Json* accept = f.Raw("accept_status")) {
      if (!accept->is_array())
        return f.Error("accept_status", "must be a list of HTTP status codes");
      for (const auto& s : *accept) {
        if (!s.is_number_integer() || s.get<int>() < 100 || s.get<int>() > 599) {
          return f.Error("accept_status", "must hold HTTP status codes (100-599)");
        }
        node->accept_.insert(s.get<int>());
      }
    }
  }
  return std::unique_ptr<Node>(std::move(node));
}

}  // namespace kiln::workflow
