// classify and embed: the pooling endpoints of an OpenAI-compatible kiln server.
//   classify: input (template), labels [..] → POST /v1/classify; labels are scored from the next
//             token's logits. Output: {label, probs {label: p}}.
//   embed:    input (template) → POST /v1/embeddings. Output: {embedding [floats], dims}.
// Both take model / base_url / api_key and fallback.models like llm nodes.
#include "workflow/node.h"
#include "workflow/nodes/model_endpoint.h"
#include "workflow/nodes/node_factories.h"

namespace kiln::workflow {
namespace {

class ModelNode final : public Node {
 public:
  ModelNode(bool classify, ModelEndpoints endpoints)
      : classify_(classify), endpoints_(std::move(endpoints)) {}
  Template input_;
  Json labels_;

  int num_variants() const override { return endpoints_.size(); }
  std::string VariantName(int i) const override { return endpoints_.Name(i); }

  StatusOr<Json> Run(NodeContext& ctx) const override {
    KILN_ASSIGN_OR_RETURN(ModelTarget target, endpoints_.Resolve(ctx));
    KILN_ASSIGN_OR_RETURN(std::string input, input_.Render(*ctx.vars));
    Json body = {{"input", input}};
    if (!target.model.empty()) body["model"] = target.model;
    if (classify_) body["labels"] = labels_;
    ctx.input = body;
    KILN_ASSIGN_OR_RETURN(
        HttpFetchResponse resp,
        endpoints_.Post(ctx, target, classify_ ? "/v1/classify" : "/v1/embeddings", body));
    Json j = Json::parse(resp.body, nullptr, false);
    if (j.is_discarded() || !j.contains("data") || !j["data"].is_array() || j["data"].empty()) {
      return Status::Unavailable("model endpoint returned no data: " + resp.body.substr(0, 200));
    }
    if (j.contains("usage") && j["usage"].is_object() && j["usage"].contains("total_tokens") &&
        j["usage"]["total_tokens"].is_number_integer()) {
      ctx.num_tokens += j["usage"]["total_tokens"].get<int64_t>();
    }
    const Json& d = j["data"][0];
    if (classify_) {
      if (!d.is_object() || !d.contains("label") || !d["label"].is_string()) {
        return Status::Unavailable("model endpoint returned no label: " + resp.body.substr(0, 200));
      }
      return Json{{"label", d["label"]}, {"probs", d.value("probs", Json::object())}};
    }
    if (!d.contains("embedding") || !d["embedding"].is_array()) {
      return Status::Unavailable("model endpoint returned no embedding");
    }
    return Json{{"embedding", d["embedding"]}, {"dims", d["embedding"].size()}};
  }

 private:
  bool classify_;
  ModelEndpoints endpoints_;
};

}  // namespace

StatusOr<std::unique_ptr<Node>> CreateModelNode(const NodeSpec& spec, NodeFields& f) {
  KILN_ASSIGN_OR_RETURN(ModelEndpoints endpoints, ModelEndpoints::FromSpec(spec, f));
  auto node = std::make_unique<ModelNode>(spec.type == "classify", std::move(endpoints));
  KILN_ASSIGN_OR_RETURN(node->input_, f.TemplateField("input", true));
  if (spec.type == "classify") {
    const Json* labels = f.Raw("labels");
    if (labels == nullptr || !labels->is_array() || labels->size() < 2) {
      return f.Error("labels", "a list of at least 2 labels is required");
    }
    for (const auto& l : *labels) {
      if (!l.is_string() || l.get<std::string>().empty()) {
        return f.Error("labels", "labels must be non-empty strings");
      }
    }
    node->labels_ = *labels;
  }
  return std::unique_ptr<Node>(std::move(node));
}

}  // namespace kiln::workflow
