#include "structured/gbnf.h"

#include <map>
#include <string>
#include <vector>

namespace kiln::structured {
namespace {

constexpr int kMaxRepeat = 1000;
constexpr int kMaxNesting = 256;

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

class GbnfParser {
 public:
  explicit GbnfParser(std::string_view text) : s_(text) {}

  StatusOr<Grammar> Parse() {
    SkipSpace();
    while (!AtEnd()) {
      std::string name = ParseName();
      if (name.empty()) return Error("expected a rule name");
      SkipSpace();
      if (s_.substr(pos_, 3) != "::=") return Error("expected '::=' after '" + name + "'");
      pos_ += 3;
      int id = RuleId(name);
      if (g_.rules[id].body) return Error("rule '" + name + "' defined twice");
      KILN_ASSIGN_OR_RETURN(ExprPtr body, ParseAlternatives(0));
      g_.rules[id].body = body;
      defined_[name] = true;
      SkipSpace();
    }
    for (const auto& [name, id] : ids_) {
      if (!g_.rules[id].body)
        return Status::InvalidArgument("grammar: undefined rule '" + name + "'");
    }
    auto root = ids_.find("root");
    if (root == ids_.end()) return Status::InvalidArgument("grammar: no 'root' rule");
    g_.root = root->second;
    return std::move(g_);
  }

 private:
  bool AtEnd() const { return pos_ >= s_.size(); }
  Status Error(const std::string& what) const {
    int line = 1;
    for (size_t i = 0; i < pos_ && i < s_.size(); ++i) line += s_[i] == '\n';
    return Status::InvalidArgument("grammar: " + what + " (line " + std::to_string(line) + ")");
  }

  void SkipSpace() {
    while (!AtEnd()) {
      char c = s_[pos_];
      if (c == '#') {
        while (!AtEnd() && s_[pos_] != '\n') ++pos_;
      } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        ++pos_;
      } else {
        break;
      }
    }
  }

  std::string ParseName() {
    size_t start = pos_;
    while (!AtEnd() && IsNameChar(s_[pos_])) ++pos_;
    return std::string(s_.substr(start, pos_ - start));
  }

  // True when a `name ::=` starts at the current position (the end of the current rule).
  bool AtRuleStart() const {
    size_t p = pos_;
    while (p < s_.size() && IsNameChar(s_[p])) ++p;
    if (p == pos_) return false;
    while (p < s_.size() && (s_[p] == ' ' || s_[p] == '\t' || s_[p] == '\n' || s_[p] == '\r')) ++p;
    return s_.substr(p, 3) == "::=";
  }

  int RuleId(const std::string& name) {
    auto it = ids_.find(name);
    if (it != ids_.end()) return it->second;
    int id = g_.AddRule(name);
    ids_[name] = id;
    return id;
  }

  StatusOr<ExprPtr> ParseAlternatives(int depth) {
    std::vector<ExprPtr> alts;
    while (true) {
      KILN_ASSIGN_OR_RETURN(ExprPtr seq, ParseSequence(depth));
      alts.push_back(seq);
      SkipSpace();
      if (!AtEnd() && s_[pos_] == '|') {
        ++pos_;
        continue;
      }
      break;
    }
    return Alt(std::move(alts));
  }

  StatusOr<ExprPtr> ParseSequence(int depth) {
    std::vector<ExprPtr> seq;
    while (true) {
      SkipSpace();
      if (AtEnd()) break;
      char c = s_[pos_];
      if (c == '|' || c == ')') break;
      if (IsNameChar(c) && AtRuleStart()) break;
      KILN_ASSIGN_OR_RETURN(ExprPtr item, ParseItem(depth));
      KILN_ASSIGN_OR_RETURN(item, ParsePostfix(item));
      seq.push_back(item);
    }
    return Seq(std::move(seq));
  }

  StatusOr<ExprPtr> ParsePostfix(ExprPtr item) {
    for (int count = 0; !AtEnd(); ++count) {
      if (count > 8) return Error("too many stacked repetition operators");
      char c = s_[pos_];
      if (c == '*') {
        item = Star(item);
      } else if (c == '+') {
        item = Plus(item);
      } else if (c == '?') {
        item = Opt(item);
      } else if (c == '{') {
        ++pos_;
        SkipSpace();
        int lo = 0;
        if (!ParseInt(&lo)) return Error("expected a number after '{'");
        int hi = lo;
        SkipSpace();
        if (!AtEnd() && s_[pos_] == ',') {
          ++pos_;
          SkipSpace();
          hi = -1;
          int v;
          if (ParseInt(&v)) hi = v;
          SkipSpace();
        }
        if (AtEnd() || s_[pos_] != '}') return Error("expected '}'");
        if (lo > kMaxRepeat || hi > kMaxRepeat) return Error("repetition count too large");
        if (hi >= 0 && hi < lo) return Error("{m,n} with n < m");
        item = Repeat(item, lo, hi);
      } else {
        break;
      }
      ++pos_;
    }
    return item;
  }

  bool ParseInt(int* out) {
    size_t start = pos_;
    long v = 0;
    while (!AtEnd() && s_[pos_] >= '0' && s_[pos_] <= '9') {
      v = std::min(v * 10 + (s_[pos_] - '0'), 1000000L);
      ++pos_;
    }
    *out = static_cast<int>(v);
    return pos_ > start;
  }

  // One (possibly escaped) code point of a literal or class.
  StatusOr<uint32_t> ParseChar() {
    if (AtEnd()) return Error("unexpected end of input");
    uint8_t c = static_cast<uint8_t>(s_[pos_]);
    if (c == '\\') {
      ++pos_;
      if (AtEnd()) return Error("trailing backslash");
      char e = s_[pos_++];
      auto hex = [&](int n) -> StatusOr<uint32_t> {
        uint32_t v = 0;
        for (int i = 0; i < n; ++i) {
          if (AtEnd()) return Error("malformed hex escape");
          int d = HexDigitValue(static_cast<uint8_t>(s_[pos_++]));
          if (d < 0) return Error("malformed hex escape");
          v = v * 16 + d;
        }
        // Code points beyond Unicode, and UTF-16 surrogates, have no UTF-8 encoding.
        if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
          return Error("escape is not a Unicode scalar value");
        return v;
      };
      switch (e) {
        case 'n':
          return uint32_t{'\n'};
        case 'r':
          return uint32_t{'\r'};
        case 't':
          return uint32_t{'\t'};
        case 'x':
          return hex(2);
        case 'u':
          return hex(4);
        case 'U':
          return hex(8);
        default:
          return static_cast<uint32_t>(static_cast<uint8_t>(e));
      }
    }
    // UTF-8 decode.
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    if (pos_ + len > s_.size()) len = 1;
    uint32_t cp = len == 1 ? c : (c & (0x7F >> len));
    for (int k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<uint8_t>(s_[pos_ + k]) & 0x3F);
    pos_ += len;
    return cp;
  }

  StatusOr<ExprPtr> ParseItem(int depth) {
    char c = s_[pos_];
    if (c == '"') {
      ++pos_;
      std::string bytes;
      while (true) {
        if (AtEnd()) return Error("unterminated string literal");
        if (s_[pos_] == '"') {
          ++pos_;
          break;
        }
        KILN_ASSIGN_OR_RETURN(uint32_t cp, ParseChar());
        AppendUtf8(cp, &bytes);
      }
      return Literal(bytes);
    }
    if (c == '[') {
      ++pos_;
      bool negate = false;
      if (!AtEnd() && s_[pos_] == '^') {
        negate = true;
        ++pos_;
      }
      std::vector<CodePointRange> ranges;
      while (true) {
        if (AtEnd()) return Error("unterminated character class");
        if (s_[pos_] == ']') {
          ++pos_;
          break;
        }
        KILN_ASSIGN_OR_RETURN(uint32_t lo, ParseChar());
        uint32_t hi = lo;
        if (pos_ + 1 < s_.size() && s_[pos_] == '-' && s_[pos_ + 1] != ']') {
          ++pos_;
          KILN_ASSIGN_OR_RETURN(hi, ParseChar());
          if (hi < lo) return Error("class range out of order");
        }
        ranges.push_back({lo, hi});
      }
      ranges = NormalizeRanges(ranges);
      if (negate) ranges = ComplementRanges(ranges);
      return Utf8Class(ranges);
    }
    if (c == '.') {
      ++pos_;
      return Utf8Class({{0, 0x10FFFF}});
    }
    if (c == '(') {
      ++pos_;
      if (depth >= kMaxNesting) return Error("groups nested too deeply");
      KILN_ASSIGN_OR_RETURN(ExprPtr inner, ParseAlternatives(depth + 1));
      SkipSpace();
      if (AtEnd() || s_[pos_] != ')') return Error("missing ')'");
      ++pos_;
      return inner;
    }
    if (IsNameChar(c)) {
      std::string name = ParseName();
      return Ref(RuleId(name));
    }
    return Error(std::string("unexpected character '") + c + "'");
  }

  std::string_view s_;
  size_t pos_ = 0;
  Grammar g_;
  std::map<std::string, int> ids_;
  std::map<std::string, bool> defined_;
};

}  // namespace

StatusOr<Grammar> GbnfToGrammar(std::string_view text) { return GbnfParser(text).Parse(); }

}  // namespace kiln::structured
