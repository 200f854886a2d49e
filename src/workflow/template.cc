#include "workflow/template.h"

#include <algorithm>
#include <charconv>
#include <exception>
#include <regex>

#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/interpreter.h"
#include "tokenizer/jinja/lexer.h"
#include "tokenizer/jinja/parser.h"

namespace kiln::workflow {

struct Template::Compiled {
  jinja::Body body;
  std::string source;  // as written (errors quote the tag at fault from it)
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

// `source` is parsed; `shown` is what errors quote (the field as written).
StatusOr<std::shared_ptr<const Template::Compiled>> CompileBody(const std::string& source,
                                                                const std::string& shown) {
  try {
    auto c = std::make_shared<Template::Compiled>();
    c->body = jinja::ParseTemplate(jinja::Tokenize(source));
    c->source = shown;
    return std::shared_ptr<const Template::Compiled>(std::move(c));
  } catch (const jinja::TemplateError& e) {
    return Status::InvalidArgument("template syntax error at " + e.Describe());
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("template syntax error: ") + e.what());
  }
}

// The `{{ … }}` / `{% … %}` tag of `source` that holds position `loc` ("" when none is found).
std::string TagAt(const std::string& source, jinja::SourceLoc loc) {
  if (loc.line <= 0) return "";
  size_t offset = 0;
  for (int line = 1; line < loc.line && offset != std::string::npos; ++line) {
    offset = source.find('\n', offset);
    if (offset != std::string::npos) ++offset;
  }
  if (offset == std::string::npos) return "";
  offset = std::min(source.size(), offset + static_cast<size_t>(std::max(0, loc.col - 1)));
  const size_t expr = source.rfind("{{", offset), stmt = source.rfind("{%", offset);
  size_t start = expr;
  if (start == std::string::npos || (stmt != std::string::npos && stmt > start)) start = stmt;
  if (start == std::string::npos) return "";
  const size_t end = source.find(source[start + 1] == '{' ? "}}" : "%}", start + 2);
  if (end == std::string::npos) return "";
  std::string tag = source.substr(start, end + 2 - start);
  if (tag.size() > 200) tag = tag.substr(0, 200) + "…";
  return tag;
}

StatusOr<std::string> RenderBody(const Template::Compiled& compiled, const Json& context) {
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
    limits.undefined_output_is_error = true;  // a misspelt nodes.x.field must not render ""
    jinja::Interpreter interpreter{limits};
    return interpreter.Render(compiled.body, globals);
  } catch (const jinja::TemplateError& e) {
    const std::string tag = TagAt(compiled.source, e.loc());
    if (tag.empty()) return Status::InvalidArgument("template render failed at " + e.Describe());
    return Status::InvalidArgument("template render failed at line " +
                                   std::to_string(e.loc().line) + ", column " +
                                   std::to_string(e.loc().col) + ", in " + tag + ": " + e.what());
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
  KILN_ASSIGN_OR_RETURN(t.body_, CompileBody(t.source_, t.source_));
  std::string expr;
  if (SingleExpression(t.source_, &expr)) {
    KILN_ASSIGN_OR_RETURN(t.value_, CompileBody("{{ (" + expr + ") | tojson }}", t.source_));
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
  return RenderBody(*body_, context);
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
        // `[digits]`: an index past any array (or beyond size_t) selects nothing.
        size_t i = 0;
        const auto [end, ec] =
            std::from_chars(part.data() + 1, part.data() + part.size() - 1, i);
        const bool ok = ec == std::errc() && end == part.data() + part.size() - 1;
        cur = ok && cur->is_array() && i < cur->size() ? &(*cur)[i] : nullptr;
      } else {
        const auto it = cur->is_object() ? cur->find(part) : cur->end();
        cur = cur->is_object() && it != cur->end() ? &*it : nullptr;
      }
      if (cur == nullptr) break;
    }
    if (cur != nullptr) return *cur;
  }
  KILN_ASSIGN_OR_RETURN(std::string text, RenderBody(*value_, context));
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

// Adds every template string leaf of `v` (at `at`) to *slots; literal strings stay in the shape.
Status CollectTemplates(const Json& v, const Json::json_pointer& at,
                        std::vector<std::pair<Json::json_pointer, Template>>* slots) {
  if (v.is_string()) {
    KILN_ASSIGN_OR_RETURN(Template t, Template::Compile(v.get<std::string>()));
    if (!t.is_literal()) slots->emplace_back(at, std::move(t));
  } else if (v.is_object()) {
    for (auto it = v.begin(); it != v.end(); ++it) {
      KILN_RETURN_IF_ERROR(CollectTemplates(it.value(), at / it.key(), slots));
    }
  } else if (v.is_array()) {
    for (size_t i = 0; i < v.size(); ++i) {
      KILN_RETURN_IF_ERROR(CollectTemplates(v[i], at / i, slots));
    }
  }
  return Status::Ok();
}

}  // namespace

StatusOr<TemplateTree> TemplateTree::Compile(const Json& value) {
  TemplateTree tree;
  tree.shape_ = value;
  KILN_RETURN_IF_ERROR(CollectTemplates(value, Json::json_pointer(), &tree.slots_));
  return tree;
}

StatusOr<Json> TemplateTree::Render(const Json& context) const {
  Json out = shape_;
  for (const auto& [at, t] : slots_) {
    KILN_ASSIGN_OR_RETURN(out[at], t.RenderValue(context));
  }
  return out;
}

std::set<std::string> TemplateTree::node_refs() const {
  std::set<std::string> refs;
  for (const auto& [at, t] : slots_) refs.insert(t.node_refs().begin(), t.node_refs().end());
  return refs;
}

}  // namespace kiln::workflow
