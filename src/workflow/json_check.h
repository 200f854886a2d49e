// CheckJsonSchema: checks a JSON value against a JSON Schema (the subset workflow outputs use:
// type, enum, const, properties, required, additionalProperties, items, min/maxItems,
// min/maxLength, minimum/maximum, exclusiveMinimum/Maximum, anyOf/oneOf/allOf, $ref to #/$defs or
// #/definitions). Keywords it does not know are ignored (as annotations). It backs the llm node's
// promise that a json_schema output is schema-valid: a model reply that is not becomes an error the
// node's retries and fallbacks handle.
//
// Thread-safety: a pure function.
#pragma once

#include <string>

#include "workflow/spec.h"

namespace kiln::workflow {

// "" when `value` is valid; otherwise the first problem, with its JSON pointer ("/label: ...").
std::string CheckJsonSchema(const Json& value, const Json& schema);

}  // namespace kiln::workflow
