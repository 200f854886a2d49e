// Concrete values against a schema: the JSON Schema keyword subset kiln supports (the keyword
// tables the converter checks every schema against, and the string formats it knows), and the
// values an `enum` / `const` schema may emit. kiln emits an enum/const value as a literal, so each
// value must itself be valid under every other keyword of its schema — type / nullable,
// minLength / maxLength (code points, as ajv counts them), pattern, format, minimum / maximum /
// exclusive bounds, minItems / maxItems, items / prefixItems / additionalItems, properties /
// required / additionalProperties, nested enum / const / anyOf / oneOf / allOf / $ref — judged
// with JSON Schema's validation semantics (what an independent validator accepts). Values that
// fail are dropped; where a keyword cannot be judged on a concrete value (an unsupported keyword
// or regex construct, a malformed keyword value) the whole schema is refused (InvalidArgument)
// rather than guessed. Formats are judged by kiln's format grammars, which are sound subsets of
// ajv-formats: a value outside them is dropped even where ajv would accept it.
//
// Not responsible for: generating values (json_schema.cc turns the kept values into literals) or
// merging allOf (the converter merges before asking).
//
// Thread-safety: pure functions; a ValueChecker is used by one thread (it is part of one compile).
#pragma once

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kiln/status.h"
#include "structured/grammar.h"
#include "structured/schema_exclusivity.h"

namespace kiln::structured {

// Annotations kiln ignores (title, description, default, ...).
const std::set<std::string>& IgnoredKeywords();
// Keywords kiln compiles; anything neither ignored nor supported is refused, naming it.
const std::set<std::string>& SupportedKeywords();

// The grammar (raw UTF-8 bytes, no quotes) of a supported string format; nullopt when unsupported.
std::optional<ExprPtr> FormatExpr(const std::string& format);

// JSON equality as JSON Schema defines it (enum, const): object key order ignored, 1 == 1.0.
bool JsonEqual(const SchemaJson& a, const SchemaJson& b);

// True when `expr` (a rule-free expression, e.g. a regex's) matches all of `bytes`.
bool ExprMatchesAll(const ExprPtr& expr, const std::string& bytes);

class ValueChecker final {
 public:
  explicit ValueChecker(SchemaRefResolver resolve) : resolve_(std::move(resolve)) {}

  // The values of `schema`'s "const" (or else its "enum") that are valid under all of `schema`.
  // `dropped` (may be null) receives one line per value left out, saying why. Error: the enum is
  // malformed, or a keyword cannot be judged.
  StatusOr<std::vector<SchemaJson>> AllowedValues(const SchemaJson& schema, const std::string& path,
                                                  std::vector<std::string>* dropped);

  // True when `value` is valid under `schema`; false with *why set when it is not.
  StatusOr<bool> Valid(const SchemaJson& value, const SchemaJson& schema, const std::string& path,
                       std::string* why);

 private:
  StatusOr<bool> ValidAt(const SchemaJson& value, const SchemaJson& schema, const std::string& path,
                         int depth, std::string* why);
  StatusOr<bool> ValidString(const std::string& value, const SchemaJson& schema,
                             const std::string& path, std::string* why);
  StatusOr<bool> ValidArray(const SchemaJson& value, const SchemaJson& schema,
                            const std::string& path, int depth, std::string* why);
  StatusOr<bool> ValidObject(const SchemaJson& value, const SchemaJson& schema,
                             const std::string& path, int depth, std::string* why);

  SchemaRefResolver resolve_;
};

}  // namespace kiln::structured
