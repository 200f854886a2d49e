#include "workflow/template.h"

#include <exception>
#include <functional>
#include <optional>
#include <regex>

#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/interpreter.h"
#include "tokenizer/jinja/lexer.h"
#include "tokenizer/jinja/parser.h"

namespace kiln::workflow {

struct Template::Compiled {
  jinja::Body body;
};

namespace {

std::set<std::string> ScanNodeRefs(const std::string& source) {
  static const std::regex kRef(
      R"(\bnodes\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*['"]([A-Za-z_][A-Za-z0-9_]*)['"]\s*\]))");
  std::set<std::string> refs;
  for (auto it = std::sregex_iterator(source.begin(), source.end(), kRef);
       it != std::sregex_iterator(); ++it) {
    refs.insert((*it)[1].matched ? (*it)[1].str() : (*it)[2].str());
  }
  return refs;
}

StatusOr<std::shared_ptr<const Template::Compiled>> CompileBody(const std::string& source) {
  try {
    auto c = std::make_shared<Template::Compiled>();
    c->body = jinja::ParseTemplate(jinja::Tokenize(source));
    return std::shared_ptr<const Template::Compiled>(std::move(c));
  } catch (const jinja::TemplateError& e) {
    return Status::InvalidArgument("template syntax error at " + e.Describe());
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("template syntax error: ") + e.what());
  }
}

StatusOr<std::string> RenderBody(const jinja::Body& body, const Json& context) {
  try {
    jinja::ContainerArena arena;
    jinja::ValueDict globals;
    jinja::AddGlobalFunctions(&globals);
    if (context.is_object()) {
      for (auto it = context.begin(); it != context.end(); ++it) {
        globals.Set(it.key(), jinja::FromJson(it.value()));
      }
    }
    jinja::RenderLimits limits;
    limits.max_output_bytes = size_t{64} << 20;
    limits.max_steps = 10'000'000;
    jinja::Interpreter interpreter{limits};
    return interpreter.Render(body, globals);
  } catch (const jinja::TemplateError& e) {
    return Status::InvalidArgument("template render failed at " + e.Describe());
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("template render ran out of memory");
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("template render failed: ") + e.what());
  }
}

// "{{ expr }}" with nothing else around it (and no second tag inside).
bool SingleExpression(const std::string& s, std::string* expr) {
  static const std::regex kSingle(R"(^\s*\{\{-?([\s\S]*?)-?\}\}\s*$)");
  std::smatch m;
  if (!std::regex_match(s, m, kSingle)) return false;
  const std::string inner = m[1].str();
  if (inner.find("{{") != std::string::npos || inner.find("}}") != std::string::npos ||
      inner.find("{%") != std::string::npos) {
    return false;
  }
  *expr = inner;
  return true;
}

}  // namespace

bool HasTemplateSyntax(const std::string& s) {
  return s.find("{{") != std::string::npos || s.find("{%") != std::string::npos ||
         s.find("{#") != std::string::npos;
}

StatusOr<Template> Template::Compile(std::string source) {
  Template t;
  t.source_ = std::move(source);
  if (!HasTemplateSyntax(t.source_)) return t;
  KILN_ASSIGN_OR_RETURN(t.body_, CompileBody(t.source_));
  std::string expr;
  if (SingleExpression(t.source_, &expr)) {
    KILN_ASSIGN_OR_RETURN(t.value_, CompileBody("{{ (" + expr + ") | tojson }}"));
    static const std::regex kPath(R"(^\s*([A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\[\d+\])*)\s*$)");
    std::smatch m;
    if (std::regex_match(expr, m, kPath)) {
      static const std::regex kPart(R"([A-Za-z_]\w*|\[\d+\])");
      const std::string path = m[1].str();
      for (auto it = std::sregex_iterator(path.begin(), path.end(), kPart);
           it != std::sregex_iterator(); ++it) {
        t.path_.push_back(it->str());
      }
    }
  }
  t.node_refs_ = ScanNodeRefs(t.source_);
  return t;
}

StatusOr<std::string> Template::Render(const Json& context) const {
  if (body_ == nullptr) return source_;
  return RenderBody(body_->body, context);
}

StatusOr<Json> Template::RenderValue(const Json& context) const {
  if (value_ == nullptr) {
    KILN_ASSIGN_OR_RETURN(std::string s, Render(context));
    return Json(std::move(s));
  }
  if (!path_.empty()) {
    const Json* cur = &context;
    for (const auto& part : path_) {
      if (part[0] == '[') {
        const size_t i = std::stoul(part.substr(1, part.size() - 2));
        cur = cur->is_array() && i < cur->size() ? &(*cur)[i] : nullptr;
      } else {
        const auto it = cur->is_object() ? cur->find(part) : cur->end();
        cur = cur->is_object() && it != cur->end() ? &*it : nullptr;
      }
      if (cur == nullptr) break;
    }
    if (cur != nullptr) return *cur;
  }
  KILN_ASSIGN_OR_RETURN(std::string text, RenderBody(value_->body, context));
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Json(std::move(text));
  return j;
}

StatusOr<Expression> Expression::Compile(const std::string& expression) {
  Expression e;
  e.source_ = expression;
  std::string inner = expression;
  std::string single;
  if (SingleExpression(expression, &single)) inner = single;  // "{{ x }}" accepted too
  auto t = Template::Compile("{% if (" + inner + ") %}1{% else %}0{% endif %}");
  if (!t.ok()) {
    return Status::InvalidArgument("expression '" + expression + "': " + t.status().message());
  }
  e.tmpl_ = std::move(*t);
  return e;
}

StatusOr<bool> Expression::Eval(const Json& context) const {
  auto out = tmpl_.Render(context);
  if (!out.ok()) return out.status().WithContext("expression '" + source_ + "'");
  return *out == "1";
}

namespace {

// Rebuilds `v` with every leaf that `leaf` claims (returns a value instead of nullopt) replaced.
StatusOr<Json> MapTree(const Json& v,
                       const std::function<std::optional<StatusOr<Json>>(const Json&)>& leaf) {
  if (auto replaced = leaf(v)) return std::move(*replaced);
  if (v.is_object()) {
    Json o = Json::object();
    for (auto it = v.begin(); it != v.end(); ++it) {
      KILN_ASSIGN_OR_RETURN(o[it.key()], MapTree(it.value(), leaf));
    }
    return o;
  }
  if (v.is_array()) {
    Json a = Json::array();
    for (const auto& item : v) {
      KILN_ASSIGN_OR_RETURN(Json x, MapTree(item, leaf));
      a.push_back(std::move(x));
    }
    return a;
  }
  return v;
}

}  // namespace

StatusOr<TemplateTree> TemplateTree::Compile(const Json& value) {
  TemplateTree tree;
  KILN_ASSIGN_OR_RETURN(tree.shape_,
                        MapTree(value, [&](const Json& v) -> std::optional<StatusOr<Json>> {
                          if (!v.is_string()) return std::nullopt;
                          auto t = Template::Compile(v.get<std::string>());
                          if (!t.ok()) return StatusOr<Json>(t.status());
                          if (t->is_literal()) return StatusOr<Json>(v);
                          tree.templates_.push_back(std::move(*t));
                          return StatusOr<Json>(Json{{"$tmpl", tree.templates_.size() - 1}});
                        }));
  return tree;
}

StatusOr<Json> TemplateTree::Render(const Json& context) const {
  if (templates_.empty()) return shape_;
  return MapTree(shape_, [&](const Json& v) -> std::optional<StatusOr<Json>> {
    if (!v.is_object() || v.size() != 1 || !v.contains("$tmpl") ||
        !v["$tmpl"].is_number_unsigned()) {
      return std::nullopt;
    }
    return templates_[v["$tmpl"].get<size_t>()].RenderValue(context);
  });
}

std::set<std::string> TemplateTree::node_refs() const {
  std::set<std::string> refs;
  for (const auto& t : templates_) refs.insert(t.node_refs().begin(), t.node_refs().end());
  return refs;
}

}  // namespace kiln::workflow
