#include "workflow/node.h"

#include "workflow/nodes/node_factories.h"

namespace kiln::workflow {

double NodeContext::SecondsLeft() const {
  if (deadline == Clock::time_point::max()) return 1e9;
  return std::chrono::duration<double>(deadline - Clock::now()).count();
}

StatusOr<std::unique_ptr<Node>> CreateNode(const NodeSpec& spec) {
  NodeFields fields(spec);
  StatusOr<std::unique_ptr<Node>> node = Status::Internal("unreachable");
  const std::string& t = spec.type;
  if (t == "llm") {
    node = CreateLlmNode(spec, fields);
  } else if (t == "classify" || t == "embed") {
    node = CreateModelNode(spec, fields);
  } else if (t == "http" || t == "message") {
    node = CreateHttpNode(spec, fields);
  } else if (t == "store") {
    node = CreateStoreNode(spec, fields);
  } else if (t == "tts") {
    node = CreateTtsNode(spec, fields);
  } else {
    node = CreateBasicNode(spec, fields);
  }
  if (!node.ok()) return node.status();
  KILN_RETURN_IF_ERROR(fields.CheckUnknown());
  (*node)->field_refs = fields.refs();
  return node;
}

}  // namespace kiln::workflow
