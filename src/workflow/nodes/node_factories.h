// The constructors of each node family (one .cc per family under nodes/); CreateNode (node.cc)
// dispatches on the node type. Each reads its fields through `fields`, which reports unknown ones.
#pragma once

#include <memory>

#include "workflow/node.h"
#include "workflow/nodes/node_fields.h"

namespace kiln::workflow {

// start, end, answer, template, condition, parallel, join.
StatusOr<std::unique_ptr<Node>> CreateBasicNode(const NodeSpec& spec, NodeFields& fields);
// llm.
StatusOr<std::unique_ptr<Node>> CreateLlmNode(const NodeSpec& spec, NodeFields& fields);
// classify, embed.
StatusOr<std::unique_ptr<Node>> CreateModelNode(const NodeSpec& spec, NodeFields& fields);
// http, message.
StatusOr<std::unique_ptr<Node>> CreateHttpNode(const NodeSpec& spec, NodeFields& fields);
// store.
StatusOr<std::unique_ptr<Node>> CreateStoreNode(const NodeSpec& spec, NodeFields& fields);
// tts.
StatusOr<std::unique_ptr<Node>> CreateTtsNode(const NodeSpec& spec, NodeFields& fields);

}  // namespace kiln::workflow
