// Builtins of the Jinja subset: filters, tests, methods of str/list/dict values and global
// functions (range, namespace, dict, raise_exception, strftime_now). Names and semantics follow
// jinja2 3.x and HF transformers' additions (tojson with ensure_ascii=False, raise_exception,
// strftime_now).
//
// Thread-safety: stateless; each call gets the Interpreter of its render.
#pragma once

#include <string>
#include <string_view>

#include "tokenizer/jinja/value.h"

namespace kiln::jinja {

class Interpreter;

bool IsKnownFilter(std::string_view name);
bool IsKnownTest(std::string_view name);

// `input | name(args)`.
Value ApplyFilter(Interpreter& interp, std::string_view name, const Value& input,
                  const CallArgs& args, SourceLoc loc);
// `input is name(args)`.
bool ApplyTest(Interpreter& interp, std::string_view name, const Value& input, const CallArgs& args,
               SourceLoc loc);
// `self.name(args)` for str/list/dict values. Sets *found = false (and returns Undefined) when
// `self` has no such method.
Value CallMethod(Interpreter& interp, const Value& self, std::string_view name,
                 const CallArgs& args, SourceLoc loc, bool* found);
// Whether `self.name` names a method (attribute lookup prefers methods over dict keys, as
// Python's getattr does).
bool HasMethod(const Value& self, std::string_view name);

// Adds range, namespace, dict, raise_exception and strftime_now to `globals` (a dict).
void AddGlobalFunctions(ValueDict* globals);

// Python int(x) / float(x) conversions used by filters; nullopt-like: returns false on failure.
bool ParseIntLiteral(std::string_view s, int64_t* out);

}  // namespace kiln::jinja
