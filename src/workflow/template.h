// Template: a workflow string field with `{{ ... }}` / `{% ... %}` parts, compiled once when the
// workflow is compiled and rendered per run with kiln's own Jinja interpreter
// (src/tokenizer/jinja: the one behind chat templates). The render context is a JSON object:
//   inputs.<name>        the run's inputs
//   nodes.<id>.<field>   outputs of nodes that finished (e.g. nodes.classify.label)
//   sys.run_id, sys.user, sys.workflow
//
// A field that is exactly one `{{ expr }}` is a *value* template: RenderValue returns the
// expression's JSON value (an object stays an object); any other text renders to a string.
// Expression (for conditions) evaluates one Jinja expression to a truth value.
//
// Not responsible for: deciding which nodes may be referenced (workflow.cc checks NodeRefs()
// against the graph).
//
// Undefined values: printing one (`{{ nodes.t.txt }}` with no field txt, `{{ inputs.missing }}`)
// is an error, not "" — a typo must not vanish from the output. Tests see Undefined as jinja2 does
// (`nodes.a or nodes.b`, `x is defined`, `x | default(...)` work).
//
// Errors: Compile names the line, column and problem; Render errors (an undefined value printed or
// used as an object, a type error) name the position and quote the tag. Nothing throws.
//
// Thread-safety: immutable after Compile; Render may run on many threads at once.
#pragma once

#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "kiln/status.h"
#include "workflow/spec.h"

namespace kiln::workflow {

class Template final {
 public:
  Template() = default;  // the empty literal
  static StatusOr<Template> Compile(std::string source);

  StatusOr<std::string> Render(const Json& context) const;
  // A value template gives the expression's JSON value; other templates give a string.
  StatusOr<Json> RenderValue(const Json& context) const;

  bool is_literal() const { return body_ == nullptr; }
  const std::string& source() const { return source_; }
  // Node ids this template names as nodes.<id> (a conservative scan of the source).
  const std::set<std::string>& node_refs() const { return node_refs_; }

  struct Compiled;  // a parsed Jinja body (template.cc)

 private:
  std::string source_;
  std::shared_ptr<const Compiled> body_;   // null: no template syntax, the source is the text
  std::shared_ptr<const Compiled> value_;  // set for a single {{ expr }}: renders expr | tojson
  // A single {{ a.b[0].c }} is looked up in the context directly (no Jinja round trip); a miss
  // falls back to the Jinja render (for its Undefined semantics).
  std::vector<std::string> path_;
  std::set<std::string> node_refs_;
};

class Expression final {
 public:
  static StatusOr<Expression> Compile(const std::string& expression);
  StatusOr<bool> Eval(const Json& context) const;
  const std::set<std::string>& node_refs() const { return tmpl_.node_refs(); }
  const std::string& source() const { return source_; }

 private:
  std::string source_;
  Template tmpl_;
};

// Every string leaf of `value` compiled as a template (objects and arrays keep their shape).
class TemplateTree final {
 public:
  static StatusOr<TemplateTree> Compile(const Json& value);
  StatusOr<Json> Render(const Json& context) const;
  std::set<std::string> node_refs() const;

 private:
  Json shape_;  // the value as written (template leaves are overwritten by Render's copy)
  // Where the templates are, out of band: no value a spec can hold is mistaken for a slot.
  std::vector<std::pair<Json::json_pointer, Template>> slots_;
};

// The template syntax markers: whether `s` needs a render at all.
bool HasTemplateSyntax(const std::string& s);

}  // namespace kiln::workflow
