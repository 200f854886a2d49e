// start, end, answer, template, condition, parallel and join: the nodes that only move data
// between other nodes (no I/O).
#include <set>

#include "workflow/node.h"
#include "workflow/nodes/node_fields.h"
#include "workflow/template.h"

namespace kiln::workflow {
namespace {

// start: its output is the run's inputs (nodes.start.<input> works as well as inputs.<input>).
class StartNode final : public Node {
 public:
  StatusOr<Json> Run(NodeContext& ctx) const override {
    return ctx.vars->contains("inputs") ? (*ctx.vars)["inputs"] : Json::object();
  }
};

// end: `outputs: {name: template}` — the run's outputs (merged over every end/answer that ran).
class EndNode final : public Node {
 public:
  explicit EndNode(TemplateTree outputs) : outputs_(std::move(outputs)) {}
  StatusOr<Json> Run(NodeContext& ctx) const override {
    KILN_ASSIGN_OR_RETURN(Json out, outputs_.Render(*ctx.vars));
    return out;
  }

 private:
  TemplateTree outputs_;
};

// answer: `answer: template` — streamed as one text_chunk and returned as outputs.answer.
class AnswerNode final : public Node {
 public:
  explicit AnswerNode(Template answer) : answer_(std::move(answer)) {}
  StatusOr<Json> Run(NodeContext& ctx) const override {
    KILN_ASSIGN_OR_RETURN(std::string text, answer_.Render(*ctx.vars));
    if (ctx.emit) ctx.emit("text_chunk", Json{{"text", text}});
    return Json{{"answer", std::move(text)}};
  }

 private:
  Template answer_;
};

// template: `template: text`, `format: text|json` → {text[, json]}.
class TemplateNode final : public Node {
 public:
  TemplateNode(Template t, bool json) : t_(std::move(t)), json_(json) {}
  StatusOr<Json> Run(NodeContext& ctx) const override {
    KILN_ASSIGN_OR_RETURN(std::string text, t_.Render(*ctx.vars));
    Json out = {{"text", text}};
    if (json_) {
      Json j = Json::parse(text, nullptr, false);
      if (j.is_discarded()) return Status::InvalidArgument("the rendered template is not JSON");
      out["json"] = std::move(j);
    }
    return out;
  }

 private:
  Template t_;
  bool json_;
};

// condition: if / elif / else. `cases: [{id, when}]` are tried in order; the first true one
// names the branch, else "else". `if: expr` is short for cases [{id: "true", when: expr}] with
// the else branch named "false".
class ConditionNode final : public Node {
 public:
  struct Case {
    std::string id;
    Expression when;
  };
  ConditionNode(std::vector<Case> cases, std::string else_id)
      : cases_(std::move(cases)), else_id_(std::move(else_id)) {}
  StatusOr<Json> Run(NodeContext& ctx) const override {
    for (const auto& c : cases_) {
      KILN_ASSIGN_OR_RETURN(bool hit, c.when.Eval(*ctx.vars));
      if (hit) return Json{{"branch", c.id}};
    }
    return Json{{"branch", else_id_}};
  }
  bool is_branching() const override { return true; }

 private:
  std::vector<Case> cases_;
  std::string else_id_;
};

// parallel: a marker that fans out (every outgoing edge runs concurrently); output {}.
class ParallelNode final : public Node {
 public:
  StatusOr<Json> Run(NodeContext&) const override { return Json::object(); }
};

// join: waits for every branch into it (the executor's rule for all nodes) and collects their
// outputs: {branches: {node_id: output}}.
class JoinNode final : public Node {
 public:
  StatusOr<Json> Run(NodeContext& ctx) const override {
    Json branches = Json::object();
    const Json& nodes = (*ctx.vars)["nodes"];
    for (const auto& p : ctx.predecessors) {
      if (nodes.contains(p)) branches[p] = nodes[p];
    }
    return Json{{"branches", std::move(branches)}};
  }
};

StatusOr<std::unique_ptr<Node>> MakeCondition(const NodeSpec& spec, NodeFields& f) {
  std::vector<ConditionNode::Case> cases;
  std::string else_id = "else";
  if (spec.config.contains("if")) {
    KILN_ASSIGN_OR_RETURN(std::string expr, f.String("if", /*required=*/true));
    KILN_ASSIGN_OR_RETURN(Expression e, f.ExpressionAt("if", expr));
    cases.push_back({"true", std::move(e)});
    else_id = "false";
  } else {
    const Json* list = f.Raw("cases");
    if (list == nullptr || !list->is_array() || list->empty()) {
      return NodeFieldError(spec.id, "cases",
                            "a non-empty list of {id, when} (or 'if') is required");
    }
    std::set<std::string> ids;
    for (size_t i = 0; i < list->size(); ++i) {
      const Json& c = (*list)[i];
      const std::string field = "cases[" + std::to_string(i) + "]";
      if (!c.is_object() || !c.contains("when") || !c["when"].is_string()) {
        return NodeFieldError(spec.id, field + ".when", "a string expression is required");
      }
      std::string id = c.contains("id") && c["id"].is_string() ? c["id"].get<std::string>()
                                                               : "case" + std::to_string(i);
      if (id == "else" || id == "fail" || !ids.insert(id).second) {
        return NodeFieldError(spec.id, field + ".id",
                              "'" + id + "' is taken (else, fail or a duplicate)");
      }
      KILN_ASSIGN_OR_RETURN(Expression e,
                            f.ExpressionAt(field + ".when", c["when"].get<std::string>()));
      cases.push_back({std::move(id), std::move(e)});
    }
  }
  f.Known({"if", "cases"});
  return std::unique_ptr<Node>(new ConditionNode(std::move(cases), else_id));
}

}  // namespace

StatusOr<std::unique_ptr<Node>> CreateBasicNode(const NodeSpec& spec, NodeFields& f) {
  std::unique_ptr<Node> node;
  if (spec.type == "start") {
    node = std::make_unique<StartNode>();
  } else if (spec.type == "end") {
    const Json* outputs = f.Raw("outputs");
    if (outputs != nullptr && !outputs->is_object()) {
      return NodeFieldError(spec.id, "outputs", "must be a mapping of name → template");
    }
    KILN_ASSIGN_OR_RETURN(TemplateTree tree, f.TreeField("outputs", Json::object()));
    node = std::make_unique<EndNode>(std::move(tree));
  } else if (spec.type == "answer") {
    KILN_ASSIGN_OR_RETURN(Template t, f.TemplateField("answer", /*required=*/true));
    node = std::make_unique<AnswerNode>(std::move(t));
  } else if (spec.type == "template") {
    KILN_ASSIGN_OR_RETURN(Template t, f.TemplateField("template", /*required=*/true));
    KILN_ASSIGN_OR_RETURN(std::string format, f.Enum("format", {"text", "json"}, "text"));
    node = std::make_unique<TemplateNode>(std::move(t), format == "json");
  } else if (spec.type == "condition") {
    KILN_ASSIGN_OR_RETURN(node, MakeCondition(spec, f));
  } else if (spec.type == "parallel") {
    node = std::make_unique<ParallelNode>();
  } else if (spec.type == "join") {
    node = std::make_unique<JoinNode>();
  } else {
    return Status::Internal("CreateBasicNode: not a basic node type: " + spec.type);
  }
  return node;
}

}  // namespace kiln::workflow
