// DiffSpecs: a structural diff of two workflow documents — nodes matched by id (added, removed,
// and changed with the fields that differ: from → to, nested fields as dotted paths), edges
// matched by (from, to, branch), inputs by name, and other top-level fields — instead of a text
// diff of the YAML.
//
// Thread-safety: a pure function.
#pragma once

#include "workflow/spec.h"

namespace kiln::workflow {

// {nodes: {added: [ids], removed: [ids], changed: [{id, fields: [{field, from, to}]}]},
//  edges: {added: [..], removed: [..]}, inputs: {added, removed, changed}, fields: [{field, from,
//  to}], identical: bool}
Json DiffSpecs(const Json& from, const Json& to);

}  // namespace kiln::workflow
