// The template syntax tree the parser builds and the interpreter walks. Nodes are plain structs
// owned by unique_ptrs (a Template owns the whole tree); every node carries its source position for
// error messages. Which fields a node uses depends on its kind (documented per kind below).
//
// Thread-safety: immutable after parsing; any number of renders may walk it at once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/jinja/error.h"
#include "tokenizer/jinja/value.h"

namespace kiln::jinja {

struct Expr;
struct Stmt;
using ExprPtr = std::unique_ptr<Expr>;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

enum class ExprKind {
  kLiteral,   // literal
  kName,      // name
  kList,      // args: elements
  kTuple,     // args: elements (a list at run time)
  kDict,      // args: key0, value0, key1, value1, ...
  kGetAttr,   // args[0].name
  kGetItem,   // args[0][args[1]]
  kSlice,     // args[0][args[1]:args[2]:args[3]] (null parts omitted)
  kCall,      // args[0](args[1..], kwargs)
  kFilter,    // args[0] | name(args[1..], kwargs)
  kTest,      // args[0] is [not (negated)] name(args[1..], kwargs)
  kUnary,     // op: "-", "+", "not"; args[0]
  kBinary,    // op: + - * / // % ** ~ and or; args[0], args[1]
  kCompare,   // ops[i] between args[i] and args[i+1]: == != < <= > >= in "not in"
  kCondExpr,  // args[0] if args[1] else args[2] (args[2] may be null)
};

// Operators of kUnary / kBinary / kCompare nodes (resolved once at parse time).
enum class Op : uint8_t {
  kNone,
  kAnd,
  kOr,
  kNot,
  kNeg,
  kPos,
  kAdd,
  kSub,
  kMul,
  kDiv,
  kFloorDiv,
  kMod,
  kPow,
  kConcat,
  kEq,
  kNe,
  kLt,
  kLe,
  kGt,
  kGe,
  kIn,
  kNotIn,
};
Op OpFromString(std::string_view text);  // kNone when unknown

struct Expr final {
  ExprKind kind;
  SourceLoc loc;
  std::string name;      // kName, kGetAttr attribute, kFilter/kTest name, kUnary/kBinary op text
  Op op = Op::kNone;     // kUnary / kBinary
  Value literal;         // kLiteral
  bool negated = false;  // kTest: "is not"
  std::vector<ExprPtr> args;                            // operands, see ExprKind
  std::vector<std::pair<std::string, ExprPtr>> kwargs;  // kCall/kFilter/kTest keyword arguments
  std::vector<Op> ops;                                  // kCompare operators
  int depth = 1;  // height of this subtree (1: no operands); the parser bounds it
};

enum class StmtKind {
  kText,         // text
  kOutput,       // {{ expr }}
  kIf,           // conditions[i] → bodies[i]; else_body
  kFor,          // for targets in expr [if cond] body [else else_body]
  kSet,          // set targets = expr (target_attr non-empty: set targets[0].target_attr = expr)
  kSetBlock,     // {% set targets[0] %}body{% endset %} (filters applied by expr when non-null)
  kMacro,        // macro name(params = defaults) body
  kFilterBlock,  // {% filter expr %}body{% endfilter %}: expr is a kFilter chain over a kName
                 // "__body"
  kBreak,
  kContinue,
  kDo,     // {% do expr %}
  kScope,  // body (generation blocks and similar no-op wrappers)
};

struct Stmt final {
  StmtKind kind;
  SourceLoc loc;
  std::string text;                  // kText
  ExprPtr expr;                      // kOutput / kFor iterable / kSet value / kDo
  ExprPtr cond;                      // kFor loop filter
  std::vector<ExprPtr> conditions;   // kIf
  std::vector<Body> bodies;          // kIf
  Body body;                         // kFor / kSetBlock / kMacro / kFilterBlock / kScope
  Body else_body;                    // kIf / kFor
  std::vector<std::string> targets;  // kFor / kSet names; kMacro: [0] = macro name
  std::string target_attr;           // kSet namespace attribute
  std::vector<std::string> params;   // kMacro
  std::vector<ExprPtr> defaults;     // kMacro, aligned with params (null = no default)
};

}  // namespace kiln::jinja
