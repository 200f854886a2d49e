// NodeFields: reads a node's type-specific fields from its spec with errors that name the node and
// the field, and remembers which fields were read so that a misspelt field ("promt") is an error
// instead of being silently ignored (CheckUnknown).
//
// Thread-safety: one per node construction.
#pragma once

#include <initializer_list>
#include <set>
#include <string>
#include <vector>

#include "workflow/spec.h"
#include "workflow/template.h"

namespace kiln::workflow {

class NodeFields final {
 public:
  explicit NodeFields(const NodeSpec& spec) : spec_(spec) {}

  const Json* Raw(const std::string& key);  // null when absent or null
  StatusOr<std::string> String(const std::string& key, bool required, const std::string& def = "");
  StatusOr<double> Number(const std::string& key, double lo, double hi, double def);
  StatusOr<bool> Bool(const std::string& key, bool def);
  StatusOr<std::string> Enum(const std::string& key, const std::vector<std::string>& allowed,
                             const std::string& def);
  StatusOr<Template> TemplateField(const std::string& key, bool required);
  // A string-or-structure field whose string leaves are templates.
  StatusOr<TemplateTree> TreeField(const std::string& key, const Json& def);
  // A mapping of string → template (headers and the like).
  StatusOr<std::vector<std::pair<std::string, Template>>> TemplateMap(const std::string& key);
  // Compiles `source` as the template of `field`, recording the nodes it reads.
  StatusOr<Template> CompileAt(const std::string& field, std::string source);
  StatusOr<Expression> ExpressionAt(const std::string& field, const std::string& source);
  const std::vector<std::pair<std::string, std::string>>& refs() const { return refs_; }
  void Known(std::initializer_list<const char*> keys);
  Status CheckUnknown() const;
  Status Error(const std::string& field, const std::string& message) const {
    return NodeFieldError(spec_.id, field, message);
  }

 private:
  const NodeSpec& spec_;
  std::set<std::string> read_;
  std::vector<std::pair<std::string, std::string>> refs_;
};

}  // namespace kiln::workflow
