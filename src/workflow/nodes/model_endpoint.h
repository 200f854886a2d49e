// ModelEndpoints: the model a node calls in each of its variants — variant 0 is the node's own
// {model, base_url, api_key}, variant i the i-th entry of fallback.models, each field defaulting
// to the node's and then to Services' defaults; base_url may be a template, e.g.
// "{{ inputs.endpoint }}", and an empty one means Services' default — and one POST of JSON to that
// OpenAI-compatible server, with the attempt's deadline and cancellation. A non-2xx answer is an
// error carrying the server's message ("model endpoint http://…: HTTP 500: …").
//
// Thread-safety: immutable after construction.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "workflow/http_client.h"
#include "workflow/node.h"
#include "workflow/nodes/node_fields.h"

namespace kiln::workflow {

struct ModelTarget {
  std::string model;
  std::string base_url;
  std::string api_key;
  bool local() const { return base_url.empty(); }  // Services::local_llm serves it
};

class ModelEndpoints final {
 public:
  // Reads model / base_url / api_key from the node and its fallback.models.
  static StatusOr<ModelEndpoints> FromSpec(const NodeSpec& spec, NodeFields& fields);

  int size() const { return static_cast<int>(targets_.size()); }
  std::string Name(int variant) const;
  // The target of `variant` with Services' defaults filled in (an llm node's target stays local,
  // base_url empty, when Services has a local_llm); error when no endpoint is known.
  StatusOr<ModelTarget> Resolve(const NodeContext& ctx) const;
  // POSTs `body` to target.base_url + path; the response when its status is 2xx.
  StatusOr<HttpFetchResponse> Post(const NodeContext& ctx, const ModelTarget& target,
                                   const std::string& path, const Json& body,
                                   std::function<void(std::string_view)> on_body = {}) const;

 private:
  std::vector<ModelTarget> targets_;
  std::vector<Template> urls_;
  bool chat_ = false;  // llm nodes: an empty base URL means Services::local_llm when there is one
                       // // targets_[i].base_url as a template (it may read inputs)
};

}  // namespace kiln::workflow
