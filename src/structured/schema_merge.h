// allOf merging: folds the members of an allOf (and a $ref with sibling keywords, and the sibling
// keywords of an anyOf/oneOf into each branch) into one schema whose valid values are exactly the
// values valid under every member — or refuses (InvalidArgument naming the keyword) where kiln
// cannot express the intersection.
//
// Exactness per keyword: "properties" / "additionalProperties" are merged key by key, because each
// member's additionalProperties judges the keys outside THAT member's own properties: a key's
// merged schema is the conjunction of what every member says about it (its property schema, or
// else its additionalProperties; absent = any), a key some member forbids becomes `false`, and the
// merged additionalProperties is the conjunction of the members'. Array items likewise position by
// position (prefixItems / draft-07 items arrays, then items / additionalItems). Conjunctions that
// are not trivial become {"allOf": [x, y]}. "required" is the union, "type" the intersection
// (OpenAPI "nullable" folded in: null only where both sides allow it), "enum" the intersection,
// bounds the tighter one; disjoint types, two different "const" or a false member make the schema
// unsatisfiable (the internal keyword "not_satisfiable" holds why: the converter emits nothing for
// it and names the reason if nothing at all is left); any other keyword on both sides with
// different values is refused. "unevaluatedProperties" is lowered to additionalProperties where
// that is exact (LowerUnevaluatedProperties; an allOf's own one sees every member's properties).
//
// Thread-safety: pure functions.
#pragma once

#include <string>

#include "kiln/status.h"
#include "structured/schema_exclusivity.h"

namespace kiln::structured {

// unevaluatedProperties of a schema object, where exact: dropped next to additionalProperties
// (which evaluates every key outside `properties`), renamed to additionalProperties when the schema
// has no allOf / anyOf / oneOf / $ref (its evaluated keys are then its own properties). Returns
// whether it remains (next to those applicators).
bool LowerUnevaluatedProperties(SchemaJson* schema);

// Merges schema `b` into `*a` (start from an empty object to normalize one schema).
Status MergeSchemas(SchemaJson* a, const SchemaJson& b, const SchemaRefResolver& resolve,
                    const std::string& path);

}  // namespace kiln::structured
