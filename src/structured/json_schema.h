// JSON Schema (the structured-output subset) → Grammar over the JSON text.
//
// Supported: type (single, unions, "null"), properties / required / additionalProperties
// (false / true / schema), items (schema, false, or a draft-07 tuple array) / prefixItems /
// additionalItems / minItems / maxItems, enum, const, anyOf, oneOf (a union only where the branches
// are provably exclusive — schema_exclusivity.h — else InvalidArgument naming the overlapping
// branches; anyOf and oneOf side by side are refused), allOf (merged exactly — schema_merge.h:
// each member's additionalProperties judges only the keys outside its own properties — or
// refused), $ref / $defs / definitions (local JSON pointers, recursion allowed), string
// minLength / maxLength (up to 65,536; a counted rule, grammar.h: the matcher counts characters)
// combinable with pattern or format (date, time, date-time, email, uuid, ipv4, uri, hostname),
// integer / number minimum / maximum / exclusiveMinimum / exclusiveMaximum (number_grammar.h:
// integers exactly within ±10^15; numbers by a sound digit automaton: integers in range plus
// decimals I.F whose whole interval (I, I+1) lies in range) and multipleOf (MultipleOfExpr),
// minProperties / maxProperties (one member rule per count so far), unevaluatedProperties (as
// additionalProperties where exact: schema_merge.h), nullable (OpenAPI).
// Ignored (annotations): title, description, default, examples, $schema, $id, $comment,
// deprecated, readOnly, writeOnly, contentEncoding, contentMediaType, discriminator (OpenAPI),
// uniqueItems: false.
// Anything else is InvalidArgument naming the keyword and where it is.
//
// Output shape: properties appear in schema order (required ones always, optional ones may be
// skipped), extra properties (only when additionalProperties is true or a schema: an absent
// additionalProperties is treated as false, as in OpenAI's strict mode — outputs stay valid) after
// them with keys different from the listed ones (a listed property with no possible value is
// absent, never an extra key); required keys missing from properties take the
// additionalProperties schema (any value when absent); enum/const values are kept only where valid
// under every other keyword of their schema (schema_value.h); a schema no value satisfies is
// InvalidArgument naming the enum/const or allOf conflict that emptied it; whitespace between
// tokens is at most one space, or a newline followed by at most 8 spaces.
// Unbounded integers have at most 15 digits, fractions at most 16, exponents at most 2.
//
// Thread-safety: pure functions.
#pragma once

#include <string_view>

#include "kiln/status.h"
#include "structured/grammar.h"

namespace kiln::structured {

StatusOr<Grammar> JsonSchemaToGrammar(std::string_view schema_json);

// Any JSON object (response_format json_object).
Grammar AnyJsonObjectGrammar();

}  // namespace kiln::structured
