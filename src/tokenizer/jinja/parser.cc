#include "tokenizer/jinja/parser.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <initializer_list>

#include "tokenizer/jinja/builtins.h"

namespace kiln::jinja {
namespace {

std::string Describe(const Token& t) {
  switch (t.type) {
    case TokenType::kText:
      return "template text";
    case TokenType::kVarBegin:
      return "'{{'";
    case TokenType::kVarEnd:
      return "'}}'";
    case TokenType::kBlockBegin:
      return "'{%'";
    case TokenType::kBlockEnd:
      return "'%}'";
    case TokenType::kName:
      return "'" + t.value + "'";
    case TokenType::kString:
      return "string literal";
    case TokenType::kInt:
    case TokenType::kFloat:
      return "number '" + t.value + "'";
    case TokenType::kOperator:
      return "'" + t.value + "'";
    case TokenType::kEof:
      return "end of template";
  }
  return "token";
}

class Parser final {
 public:
  explicit Parser(const std::vector<Token>& tokens) : t_(tokens) {}

  Body ParseAll() {
    std::string found;
    Body body = ParseBody({}, &found, nullptr);
    return body;
  }

 private:
  // ---- token helpers ------------------------------------------------------------------------
  const Token& Peek(size_t ahead = 0) const {
    size_t i = std::min(pos_ + ahead, t_.size() - 1);
    return t_[i];
  }
  const Token& Next() {
    const Token& tok = t_[pos_];
    if (pos_ + 1 < t_.size()) ++pos_;
    return tok;
  }
  bool IsOp(std::string_view op, size_t ahead = 0) const {
    const Token& tok = Peek(ahead);
    return tok.type == TokenType::kOperator && tok.value == op;
  }
  bool IsName(std::string_view name, size_t ahead = 0) const {
    const Token& tok = Peek(ahead);
    return tok.type == TokenType::kName && tok.value == name;
  }
  bool SkipOp(std::string_view op) {
    if (!IsOp(op)) return false;
    Next();
    return true;
  }
  bool SkipName(std::string_view name) {
    if (!IsName(name)) return false;
    Next();
    return true;
  }
  [[noreturn]] void Fail(const Token& at, const std::string& message) {
    ThrowSyntax(at.loc, message);
  }
  void ExpectOp(std::string_view op) {
    if (!SkipOp(op)) Fail(Peek(), "expected '" + std::string(op) + "', got " + Describe(Peek()));
  }
  std::string ExpectName(std::string_view what) {
    if (Peek().type != TokenType::kName) {
      Fail(Peek(), "expected " + std::string(what) + ", got " + Describe(Peek()));
    }
    return Next().value;
  }
  void ExpectBlockEnd(std::string_view tag) {
    if (Peek().type != TokenType::kBlockEnd) {
      Fail(Peek(),
           "expected end of '" + std::string(tag) + "' tag ('%}'), got " + Describe(Peek()));
    }
    Next();
  }

  struct DepthGuard {
    DepthGuard(Parser* p, const Token& at) : parser(p) {
      if (++parser->depth_ > kMaxNestingDepth) {
        parser->Fail(at, "template nested too deeply (more than " +
                             std::to_string(kMaxNestingDepth) + " levels)");
      }
    }
    ~DepthGuard() { --parser->depth_; }
    Parser* parser;
  };

  // Appends an operand to `parent`, keeping parent->depth (the height of its subtree) and refusing
  // trees deeper than kMaxNestingDepth. Flat chains (1+1+…, a|f|f…, x~x~…, a and b and …, x[0][0]…)
  // are parsed by loops but build left-deep trees that the interpreter walks, and frees,
  // recursively: the height bound is what keeps both off the end of the stack.
  void Push(Expr* parent, ExprPtr child) {
    if (child != nullptr) Deepen(parent, *child);
    parent->args.push_back(std::move(child));
  }
  void Deepen(Expr* parent, const Expr& child) {
    if (child.depth < parent->depth) return;
    parent->depth = child.depth + 1;
    if (parent->depth > kMaxNestingDepth) {
      ThrowSyntax(child.loc, "expression nested too deeply (more than " +
                                 std::to_string(kMaxNestingDepth) +
                                 " levels of operators, filters, subscripts or calls)");
    }
  }

  ExprPtr MakeExpr(ExprKind kind, SourceLoc loc) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->loc = loc;
    return e;
  }
  StmtPtr MakeStmt(StmtKind kind, SourceLoc loc) {
    auto s = std::make_unique<Stmt>();
    s->kind = kind;
    s->loc = loc;
    return s;
  }

  // ---- statements ---------------------------------------------------------------------------
  // Parses statements until a block tag named in `terms` ({% name ...); consumes the '{%' and the
  // name and stores the name in *found. `opener` names the block being closed for errors.
  Body ParseBody(std::initializer_list<std::string_view> terms, std::string* found,
                 const Token* opener) {
    Body body;
    while (true) {
      const Token& tok = Peek();
      switch (tok.type) {
        case TokenType::kText: {
          auto s = MakeStmt(StmtKind::kText, tok.loc);
          s->text = Next().value;
          body.push_back(std::move(s));
          break;
        }
        case TokenType::kVarBegin: {
          Next();
          auto s = MakeStmt(StmtKind::kOutput, tok.loc);
          s->expr = ParseTuple(true);
          if (Peek().type != TokenType::kVarEnd) {
            Fail(Peek(), "expected end of print statement ('}}'), got " + Describe(Peek()));
          }
          Next();
          body.push_back(std::move(s));
          break;
        }
        case TokenType::kBlockBegin: {
          Next();
          const Token& name = Peek();
          if (name.type != TokenType::kName) Fail(name, "expected a tag name after '{%'");
          if (std::find(terms.begin(), terms.end(), name.value) != terms.end()) {
            *found = Next().value;
            return body;
          }
          body.push_back(ParseStatement());
          break;
        }
        case TokenType::kEof: {
          if (opener != nullptr) {
            std::string expected;
            for (std::string_view t : terms) {
              if (!expected.empty()) expected += " or ";
              expected += "'" + std::string(t) + "'";
            }
            Fail(tok, "unexpected end of template: the '" + opener->value +
                          "' block opened at line " + std::to_string(opener->loc.line) +
                          ", column " + std::to_string(opener->loc.col) +
                          " was never closed (expected " + expected + ")");
          }
          *found = "";
          return body;
        }
        default:
          Fail(tok, "unexpected " + Describe(tok));
      }
    }
  }

  StmtPtr ParseStatement() {
    const Token& tag = Peek();
    DepthGuard guard(this, tag);
    const std::string name = tag.value;
    if (name == "if") return ParseIf();
    if (name == "for") return ParseFor();
    if (name == "set") return ParseSet();
    if (name == "macro") return ParseMacro();
    if (name == "filter") return ParseFilterBlock();
    if (name == "break" || name == "continue") {
      Next();
      if (loop_depth_ == 0) Fail(tag, "'" + name + "' outside of a for loop");
      ExpectBlockEnd(name);
      return MakeStmt(name == "break" ? StmtKind::kBreak : StmtKind::kContinue, tag.loc);
    }
    if (name == "do") {
      Next();
      auto s = MakeStmt(StmtKind::kDo, tag.loc);
      s->expr = ParseTuple(true);
      ExpectBlockEnd(name);
      return s;
    }
    if (name == "generation") {
      Next();
      ExpectBlockEnd(name);
      auto s = MakeStmt(StmtKind::kScope, tag.loc);
      std::string found;
      s->body = ParseBody({"endgeneration"}, &found, &tag);
      ExpectBlockEnd("endgeneration");
      return s;
    }
    static constexpr std::string_view kUnsupported[] = {
        "include", "import", "from", "extends", "block", "call", "with", "autoescape", "trans"};
    if (std::find(std::begin(kUnsupported), std::end(kUnsupported), name) !=
        std::end(kUnsupported)) {
      Fail(tag, "unsupported tag '" + name + "'");
    }
    if (name.rfind("end", 0) == 0 || name == "elif" || name == "else") {
      Fail(tag, "unexpected '" + name + "' (no open block it could close)");
    }
    Fail(tag, "unknown tag '" + name + "'");
  }

  StmtPtr ParseIf() {
    const Token& tag = Next();
    auto s = MakeStmt(StmtKind::kIf, tag.loc);
    s->conditions.push_back(ParseTuple(true));
    ExpectBlockEnd("if");
    while (true) {
      std::string found;
      s->bodies.push_back(ParseBody({"elif", "else", "endif"}, &found, &tag));
      if (found == "elif") {
        s->conditions.push_back(ParseTuple(true));
        ExpectBlockEnd("elif");
        continue;
      }
      if (found == "else") {
        ExpectBlockEnd("else");
        s->else_body = ParseBody({"endif"}, &found, &tag);
      }
      ExpectBlockEnd("endif");
      return s;
    }
  }

  std::vector<std::string> ParseTargets(std::string_view tag) {
    std::vector<std::string> targets;
    bool paren = SkipOp("(");
    do {
      targets.push_back(ExpectName(std::string("a variable name in '") + std::string(tag) + "'"));
    } while (SkipOp(","));
    if (paren) ExpectOp(")");
    return targets;
  }

  StmtPtr ParseFor() {
    const Token& tag = Next();
    auto s = MakeStmt(StmtKind::kFor, tag.loc);
    s->targets = ParseTargets("for");
    if (!SkipName("in")) Fail(Peek(), "expected 'in' in for loop, got " + Describe(Peek()));
    s->expr = ParseTuple(false);
    if (SkipName("if")) s->cond = ParseTuple(true);
    if (IsName("recursive")) Fail(Peek(), "recursive for loops are not supported");
    ExpectBlockEnd("for");
    ++loop_depth_;
    std::string found;
    s->body = ParseBody({"else", "endfor"}, &found, &tag);
    --loop_depth_;
    if (found == "else") {
      ExpectBlockEnd("else");
      s->else_body = ParseBody({"endfor"}, &found, &tag);
    }
    ExpectBlockEnd("endfor");
    return s;
  }

  StmtPtr ParseSet() {
    const Token& tag = Next();
    auto s = MakeStmt(StmtKind::kSet, tag.loc);
    if (Peek().type == TokenType::kName && IsOp(".", 1)) {
      s->targets.push_back(Next().value);
      Next();
      s->target_attr = ExpectName("an attribute name after '.'");
    } else {
      s->targets = ParseTargets("set");
    }
    if (SkipOp("=")) {
      s->expr = ParseTuple(true);
      ExpectBlockEnd("set");
      return s;
    }
    if (s->targets.size() != 1 || !s->target_attr.empty()) {
      Fail(Peek(), "expected '=' in set, got " + Describe(Peek()));
    }
    s->kind = StmtKind::kSetBlock;
    if (IsOp("|")) {
      auto placeholder = MakeExpr(ExprKind::kName, Peek().loc);
      placeholder->name = "__body";
      s->expr = ParseFilterChain(std::move(placeholder));
    }
    ExpectBlockEnd("set");
    std::string found;
    s->body = ParseBody({"endset"}, &found, &tag);
    ExpectBlockEnd("endset");
    return s;
  }

  StmtPtr ParseMacro() {
    const Token& tag = Next();
    auto s = MakeStmt(StmtKind::kMacro, tag.loc);
    s->targets.push_back(ExpectName("a macro name"));
    ExpectOp("(");
    while (!IsOp(")")) {
      s->params.push_back(ExpectName("a macro parameter name"));
      s->defaults.push_back(SkipOp("=") ? ParseExpression(true) : nullptr);
      if (!SkipOp(",")) break;
    }
    ExpectOp(")");
    ExpectBlockEnd("macro");
    std::string found;
    int saved_loop_depth = loop_depth_;
    loop_depth_ = 0;
    s->body = ParseBody({"endmacro"}, &found, &tag);
    loop_depth_ = saved_loop_depth;
    if (Peek().type == TokenType::kName) Next();  // {% endmacro name %}
    ExpectBlockEnd("endmacro");
    return s;
  }

  StmtPtr ParseFilterBlock() {
    const Token& tag = Next();
    auto s = MakeStmt(StmtKind::kFilterBlock, tag.loc);
    auto placeholder = MakeExpr(ExprKind::kName, Peek().loc);
    placeholder->name = "__body";
    s->expr = ParseFilterOne(std::move(placeholder));
    while (IsOp("|")) {
      Next();
      s->expr = ParseFilterOne(std::move(s->expr));
    }
    ExpectBlockEnd("filter");
    std::string found;
    s->body = ParseBody({"endfilter"}, &found, &tag);
    ExpectBlockEnd("endfilter");
    return s;
  }

  // ---- expressions --------------------------------------------------------------------------
  // An expression, or a bare tuple "a, b" (set values, print, for iterables).
  ExprPtr ParseTuple(bool with_condexpr) {
    SourceLoc loc = Peek().loc;
    ExprPtr first = ParseExpression(with_condexpr);
    if (!IsOp(",")) return first;
    auto tuple = MakeExpr(ExprKind::kTuple, loc);
    Push(tuple.get(), std::move(first));
    while (SkipOp(",")) {
      if (Peek().type == TokenType::kBlockEnd || Peek().type == TokenType::kVarEnd) break;
      Push(tuple.get(), ParseExpression(with_condexpr));
    }
    return tuple;
  }

  ExprPtr ParseExpression(bool with_condexpr) {
    DepthGuard guard(this, Peek());
    if (!with_condexpr) return ParseOr();
    ExprPtr expr = ParseOr();
    while (IsName("if")) {
      SourceLoc loc = Next().loc;
      auto cond = MakeExpr(ExprKind::kCondExpr, loc);
      Push(cond.get(), std::move(expr));
      Push(cond.get(), ParseOr());
      Push(cond.get(), SkipName("else") ? ParseExpression(true) : nullptr);
      expr = std::move(cond);
    }
    return expr;
  }

  ExprPtr Binary(std::string op, SourceLoc loc, ExprPtr a, ExprPtr b) {
    auto e = MakeExpr(ExprKind::kBinary, loc);
    e->op = OpFromString(op);
    e->name = std::move(op);
    Push(e.get(), std::move(a));
    Push(e.get(), std::move(b));
    return e;
  }

  ExprPtr ParseOr() {
    ExprPtr left = ParseAnd();
    while (IsName("or")) {
      SourceLoc loc = Next().loc;
      left = Binary("or", loc, std::move(left), ParseAnd());
    }
    return left;
  }

  ExprPtr ParseAnd() {
    ExprPtr left = ParseNot();
    while (IsName("and")) {
      SourceLoc loc = Next().loc;
      left = Binary("and", loc, std::move(left), ParseNot());
    }
    return left;
  }

  ExprPtr ParseNot() {
    if (IsName("not")) {
      DepthGuard guard(this, Peek());
      auto e = MakeExpr(ExprKind::kUnary, Next().loc);
      e->name = "not";
      e->op = Op::kNot;
      Push(e.get(), ParseNot());
      return e;
    }
    return ParseCompare();
  }

  ExprPtr ParseCompare() {
    SourceLoc loc = Peek().loc;
    ExprPtr first = ParseMath1();
    std::unique_ptr<Expr> cmp;
    while (true) {
      std::string op;
      const Token& tok = Peek();
      if (tok.type == TokenType::kOperator &&
          (tok.value == "==" || tok.value == "!=" || tok.value == "<" || tok.value == "<=" ||
           tok.value == ">" || tok.value == ">=")) {
        op = tok.value;
        Next();
      } else if (IsName("in")) {
        op = "in";
        Next();
      } else if (IsName("not") && IsName("in", 1)) {
        op = "not in";
        Next();
        Next();
      } else {
        break;
      }
      if (!cmp) {
        cmp = MakeExpr(ExprKind::kCompare, loc);
        Push(cmp.get(), std::move(first));
      }
      cmp->ops.push_back(OpFromString(op));
      Push(cmp.get(), ParseMath1());
    }
    return cmp ? std::move(cmp) : std::move(first);
  }

  ExprPtr ParseMath1() {
    ExprPtr left = ParseConcat();
    while (IsOp("+") || IsOp("-")) {
      const Token& op = Next();
      left = Binary(op.value, op.loc, std::move(left), ParseConcat());
    }
    return left;
  }

  ExprPtr ParseConcat() {
    ExprPtr left = ParseMath2();
    while (IsOp("~")) {
      const Token& op = Next();
      left = Binary("~", op.loc, std::move(left), ParseMath2());
    }
    return left;
  }

  ExprPtr ParseMath2() {
    ExprPtr left = ParsePow();
    while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
      const Token& op = Next();
      left = Binary(op.value, op.loc, std::move(left), ParsePow());
    }
    return left;
  }

  ExprPtr ParsePow() {
    ExprPtr left = ParseUnary(true);
    while (IsOp("**")) {
      const Token& op = Next();
      left = Binary("**", op.loc, std::move(left), ParseUnary(true));
    }
    return left;
  }

  ExprPtr ParseUnary(bool with_filter) {
    DepthGuard guard(this, Peek());
    ExprPtr node;
    if (IsOp("-") || IsOp("+")) {
      const Token& op = Next();
      node = MakeExpr(ExprKind::kUnary, op.loc);
      node->name = op.value;
      node->op = op.value == "-" ? Op::kNeg : Op::kPos;
      Push(node.get(), ParseUnary(false));
    } else {
      node = ParsePrimary();
    }
    node = ParsePostfix(std::move(node));
    if (with_filter) node = ParseFilterChain(std::move(node));
    return node;
  }

  ExprPtr Literal(Value v, SourceLoc loc) {
    auto e = MakeExpr(ExprKind::kLiteral, loc);
    e->literal = std::move(v);
    return e;
  }

  ExprPtr ParsePrimary() {
    const Token& tok = Peek();
    switch (tok.type) {
      case TokenType::kName: {
        Next();
        const std::string& n = tok.value;
        if (n == "true" || n == "True") return Literal(Value::Bool(true), tok.loc);
        if (n == "false" || n == "False") return Literal(Value::Bool(false), tok.loc);
        if (n == "none" || n == "None") return Literal(Value::None(), tok.loc);
        auto e = MakeExpr(ExprKind::kName, tok.loc);
        e->name = n;
        return e;
      }
      case TokenType::kString: {
        std::string s = Next().value;
        while (Peek().type == TokenType::kString) s += Next().value;  // "a" "b" → "ab"
        return Literal(Value::Str(std::move(s)), tok.loc);
      }
      case TokenType::kInt: {
        Next();
        int64_t v = 0;
        if (!ParseIntLiteral(tok.value, &v)) Fail(tok, "integer literal out of range");
        return Literal(Value::Int(v), tok.loc);
      }
      case TokenType::kFloat: {
        Next();
        return Literal(Value::Float(std::strtod(tok.value.c_str(), nullptr)), tok.loc);
      }
      case TokenType::kOperator: {
        if (tok.value == "(") {
          Next();
          if (SkipOp(")")) return MakeExpr(ExprKind::kTuple, tok.loc);
          ExprPtr inner = ParseExpression(true);
          if (IsOp(",")) {
            auto tuple = MakeExpr(ExprKind::kTuple, tok.loc);
            Push(tuple.get(), std::move(inner));
            while (SkipOp(",")) {
              if (IsOp(")")) break;
              Push(tuple.get(), ParseExpression(true));
            }
            inner = std::move(tuple);
          }
          ExpectOp(")");
          return inner;
        }
        if (tok.value == "[") {
          Next();
          auto list = MakeExpr(ExprKind::kList, tok.loc);
          while (!IsOp("]")) {
            Push(list.get(), ParseExpression(true));
            if (!SkipOp(",")) break;
          }
          ExpectOp("]");
          return list;
        }
        if (tok.value == "{") {
          Next();
          auto dict = MakeExpr(ExprKind::kDict, tok.loc);
          while (!IsOp("}")) {
            Push(dict.get(), ParseExpression(true));
            ExpectOp(":");
            Push(dict.get(), ParseExpression(true));
            if (!SkipOp(",")) break;
          }
          ExpectOp("}");
          return dict;
        }
        break;
      }
      default:
        break;
    }
    Fail(tok, "unexpected " + Describe(tok) + " (expected an expression)");
  }

  ExprPtr ParsePostfix(ExprPtr node) {
    while (true) {
      const Token& tok = Peek();
      if (IsOp(".")) {
        Next();
        const Token& attr = Peek();
        if (attr.type == TokenType::kName) {
          auto e = MakeExpr(ExprKind::kGetAttr, attr.loc);
          e->name = Next().value;
          Push(e.get(), std::move(node));
          node = std::move(e);
        } else if (attr.type == TokenType::kInt) {
          auto e = MakeExpr(ExprKind::kGetItem, attr.loc);
          Push(e.get(), std::move(node));
          Push(e.get(), ParsePrimary());
          node = std::move(e);
        } else {
          Fail(attr, "expected an attribute name after '.', got " + Describe(attr));
        }
      } else if (IsOp("[")) {
        Next();
        node = ParseSubscript(std::move(node), tok.loc);
      } else if (IsOp("(")) {
        node = ParseCall(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr ParseSubscript(ExprPtr node, SourceLoc loc) {
    ExprPtr parts[3];
    int colons = 0;
    if (!IsOp(":")) parts[0] = ParseExpression(true);
    while (colons < 2 && SkipOp(":")) {
      ++colons;
      if (!IsOp(":") && !IsOp("]")) parts[colons] = ParseExpression(true);
    }
    ExpectOp("]");
    if (colons == 0) {
      auto e = MakeExpr(ExprKind::kGetItem, loc);
      Push(e.get(), std::move(node));
      Push(e.get(), std::move(parts[0]));
      return e;
    }
    auto e = MakeExpr(ExprKind::kSlice, loc);
    Push(e.get(), std::move(node));
    for (auto& p : parts) Push(e.get(), std::move(p));
    return e;
  }

  // Parses "(args)" into `call` (whose args[0] is already the callee / filter input).
  void ParseCallArgs(Expr* call) {
    ExpectOp("(");
    while (!IsOp(")")) {
      if (IsOp("*") || IsOp("**")) Fail(Peek(), "*args / **kwargs in calls are not supported");
      if (Peek().type == TokenType::kName && IsOp("=", 1)) {
        std::string key = Next().value;
        Next();
        ExprPtr value = ParseExpression(true);
        Deepen(call, *value);
        call->kwargs.emplace_back(std::move(key), std::move(value));
      } else {
        if (!call->kwargs.empty()) Fail(Peek(), "positional argument after keyword argument");
        Push(call, ParseExpression(true));
      }
      if (!SkipOp(",")) break;
    }
    ExpectOp(")");
  }

  ExprPtr ParseCall(ExprPtr callee) {
    auto call = MakeExpr(ExprKind::kCall, callee->loc);
    Push(call.get(), std::move(callee));
    ParseCallArgs(call.get());
    return call;
  }

  ExprPtr ParseFilterOne(ExprPtr input) {
    const Token& name_tok = Peek();
    std::string name = ExpectName("a filter name");
    while (IsOp(".") && Peek(1).type == TokenType::kName) {
      Next();
      name += "." + Next().value;
    }
    if (!IsKnownFilter(name)) Fail(name_tok, "unknown filter '" + name + "'");
    auto f = MakeExpr(ExprKind::kFilter, name_tok.loc);
    f->name = name;
    Push(f.get(), std::move(input));
    if (IsOp("(")) ParseCallArgs(f.get());
    return f;
  }

  ExprPtr ParseFilterChain(ExprPtr node) {
    while (true) {
      if (IsOp("|")) {
        Next();
        node = ParseFilterOne(std::move(node));
      } else if (IsName("is")) {
        node = ParseTest(std::move(node));
      } else if (IsOp("(")) {
        node = ParseCall(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr ParseTest(ExprPtr input) {
    Next();  // is
    bool negated = SkipName("not");
    const Token& name_tok = Peek();
    std::string name = ExpectName("a test name after 'is'");
    if (!IsKnownTest(name)) Fail(name_tok, "unknown test '" + name + "'");
    auto t = MakeExpr(ExprKind::kTest, name_tok.loc);
    t->name = name;
    t->negated = negated;
    Push(t.get(), std::move(input));
    const Token& next = Peek();
    if (IsOp("(")) {
      ParseCallArgs(t.get());
    } else if ((next.type == TokenType::kName || next.type == TokenType::kString ||
                next.type == TokenType::kInt || next.type == TokenType::kFloat || IsOp("[") ||
                IsOp("{")) &&
               !IsName("else") && !IsName("or") && !IsName("and")) {
      if (IsName("is")) Fail(next, "cannot chain multiple tests with 'is'");
      Push(t.get(), ParsePostfix(ParsePrimary()));
    }
    return t;
  }

  const std::vector<Token>& t_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

Op OpFromString(std::string_view text) {
  static constexpr std::pair<std::string_view, Op> kOps[] = {
      {"and", Op::kAnd}, {"or", Op::kOr},  {"not", Op::kNot},     {"+", Op::kAdd},
      {"-", Op::kSub},   {"*", Op::kMul},  {"/", Op::kDiv},       {"//", Op::kFloorDiv},
      {"%", Op::kMod},   {"**", Op::kPow}, {"~", Op::kConcat},    {"==", Op::kEq},
      {"!=", Op::kNe},   {"<", Op::kLt},   {"<=", Op::kLe},       {">", Op::kGt},
      {">=", Op::kGe},   {"in", Op::kIn},  {"not in", Op::kNotIn}};
  for (const auto& [t, op] : kOps) {
    if (t == text) return op;
  }
  return Op::kNone;
}

Body ParseTemplate(const std::vector<Token>& tokens) { return Parser(tokens).ParseAll(); }

}  // namespace kiln::jinja
