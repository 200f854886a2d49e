#include "structured/regex.h"

#include <string>
#include <vector>

namespace kiln::structured {
namespace {

constexpr int kMaxRepeat = 1000;
constexpr int kMaxNesting = 256;

using Ranges = std::vector<CodePointRange>;

Ranges DigitRanges() { return {{'0', '9'}}; }
Ranges WordRanges() { return {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}}; }
Ranges SpaceRanges() {
  return {{'\t', '\r'},     {' ', ' '},       {0xA0, 0xA0},     {0x1680, 0x1680}, {0x2000, 0x200A},
          {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000}, {0xFEFF, 0xFEFF}};
}
Ranges DotRanges() { return ComplementRanges({{'\n', '\n'}, {'\r', '\r'}, {0x2028, 0x2029}}); }

class Parser {
 public:
  Parser(std::string_view pattern, RegexMode mode) : mode_(mode) {
    // Decode UTF-8 (invalid bytes are taken as Latin-1 code points).
    for (size_t i = 0; i < pattern.size();) {
      uint8_t c = static_cast<uint8_t>(pattern[i]);
      int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
      if (len <= 1 || i + len > pattern.size()) {
        cps_.push_back(c);
        ++i;
        continue;
      }
      uint32_t cp = c & (0x7F >> len);
      bool ok = true;
      for (int k = 1; k < len; ++k) {
        uint8_t cc = static_cast<uint8_t>(pattern[i + k]);
        if ((cc & 0xC0) != 0x80) ok = false;
        cp = (cp << 6) | (cc & 0x3F);
      }
      if (!ok) {
        cps_.push_back(c);
        ++i;
        continue;
      }
      cps_.push_back(cp);
      i += len;
    }
  }

  StatusOr<RegexResult> Parse() {
    RegexResult result;
    if (!AtEnd() && Peek() == '^') {
      result.anchored_start = true;
      ++pos_;
    }
    if (cps_.size() > pos_ && cps_.back() == '$' &&
        !(cps_.size() >= 2 && cps_[cps_.size() - 2] == '\\')) {
      result.anchored_end = true;
      cps_.pop_back();
    }
    KILN_ASSIGN_OR_RETURN(result.expr, ParseAlt());
    if (!AtEnd()) return Error("unbalanced ')'");
    return result;
  }

 private:
  bool AtEnd() const { return pos_ >= cps_.size(); }
  uint32_t Peek() const { return cps_[pos_]; }
  Status Error(const std::string& what) const {
    return Status::InvalidArgument("regex: " + what + " at offset " + std::to_string(pos_));
  }

  ExprPtr Class(const Ranges& ranges) const {
    return mode_ == RegexMode::kRaw ? Utf8Class(ranges) : JsonEncodedClass(ranges);
  }

  StatusOr<ExprPtr> ParseAlt() {
    std::vector<ExprPtr> alts;
    KILN_ASSIGN_OR_RETURN(ExprPtr first, ParseSeq());
    alts.push_back(first);
    while (!AtEnd() && Peek() == '|') {
      ++pos_;
      KILN_ASSIGN_OR_RETURN(ExprPtr next, ParseSeq());
      alts.push_back(next);
    }
    return Alt(std::move(alts));
  }

  StatusOr<ExprPtr> ParseSeq() {
    std::vector<ExprPtr> seq;
    while (!AtEnd() && Peek() != '|' && Peek() != ')') {
      KILN_ASSIGN_OR_RETURN(ExprPtr atom, ParseAtom());
      KILN_ASSIGN_OR_RETURN(ExprPtr q, ParseQuantifiers(atom));
      seq.push_back(q);
    }
    return Seq(std::move(seq));
  }

  bool ParseInt(int* out) {
    size_t start = pos_;
    long v = 0;
    while (!AtEnd() && Peek() >= '0' && Peek() <= '9') {
      v = v * 10 + (Peek() - '0');
      if (v > 1000000) v = 1000000;
      ++pos_;
    }
    *out = static_cast<int>(v);
    return pos_ > start;
  }

  StatusOr<ExprPtr> ParseQuantifiers(ExprPtr atom) {
    for (int count = 0; !AtEnd(); ++count) {
      if (count > 8) return Error("too many stacked quantifiers");
      uint32_t c = Peek();
      int lo = 0, hi = -1;
      if (c == '*') {
        ++pos_;
      } else if (c == '+') {
        lo = 1;
        ++pos_;
      } else if (c == '?') {
        hi = 1;
        ++pos_;
      } else if (c == '{') {
        size_t save = pos_;
        ++pos_;
        if (!ParseInt(&lo)) {
          pos_ = save;
          return atom;  // a literal '{' follows (handled by the caller as an atom)
        }
        hi = lo;
        if (!AtEnd() && Peek() == ',') {
          ++pos_;
          hi = -1;
          int v;
          if (ParseInt(&v)) hi = v;
        }
        if (AtEnd() || Peek() != '}') return Error("malformed {m,n} quantifier");
        ++pos_;
        if (lo > kMaxRepeat || hi > kMaxRepeat) {
          return Error("repetition count above " + std::to_string(kMaxRepeat));
        }
        if (hi >= 0 && hi < lo) return Error("{m,n} with n < m");
      } else {
        return atom;
      }
      if (!AtEnd() && (Peek() == '?' || Peek() == '+')) ++pos_;  // lazy / possessive
      atom = Repeat(atom, lo, hi);
    }
    return atom;
  }

  // Parses an escape after '\\' into either a class (ranges) or one code point.
  Status ParseEscape(Ranges* ranges, bool in_class) {
    if (AtEnd()) return Error("trailing backslash");
    uint32_t c = cps_[pos_++];
    auto hex = [&](int n, uint32_t* out) -> bool {
      uint32_t v = 0;
      for (int i = 0; i < n; ++i) {
        if (AtEnd()) return false;
        int d = HexDigitValue(Peek());
        if (d < 0) return false;
        v = v * 16 + d;
        ++pos_;
      }
      *out = v;
      return true;
    };
    uint32_t cp = c;
    switch (c) {
      case 'd':
        *ranges = DigitRanges();
        return Status::Ok();
      case 'D':
        *ranges = ComplementRanges(DigitRanges());
        return Status::Ok();
      case 'w':
        *ranges = WordRanges();
        return Status::Ok();
      case 'W':
        *ranges = ComplementRanges(WordRanges());
        return Status::Ok();
      case 's':
        *ranges = SpaceRanges();
        return Status::Ok();
      case 'S':
        *ranges = ComplementRanges(SpaceRanges());
        return Status::Ok();
      case 'n':
        cp = '\n';
        break;
      case 't':
        cp = '\t';
        break;
      case 'r':
        cp = '\r';
        break;
      case 'f':
        cp = '\f';
        break;
      case 'v':
        cp = '\v';
        break;
      case '0':
        cp = 0;
        break;
      case 'b':
        if (in_class) {
          cp = '\b';
          break;
        }
        return Error("word boundary \\b is not supported");
      case 'B':
        return Error("\\B is not supported");
      case 'x':
        if (!hex(2, &cp)) return Error("malformed \\x escape");
        break;
      case 'u':
        if (!AtEnd() && Peek() == '{') {
          ++pos_;
          cp = 0;
          int n = 0;
          while (!AtEnd() && Peek() != '}' && n < 7) {
            uint32_t d;
            if (!hex(1, &d)) return Error("malformed \\u{...} escape");
            cp = cp * 16 + d;
            ++n;
          }
          if (AtEnd() || Peek() != '}' || n == 0) return Error("malformed \\u{...} escape");
          ++pos_;
        } else if (!hex(4, &cp)) {
          return Error("malformed \\u escape");
        }
        break;
      case 'p':
      case 'P':
        return Error("unicode property escapes are not supported");
      case 'k':
        return Error("named backreferences are not supported");
      default:
        if (c >= '1' && c <= '9') return Error("backreferences are not supported");
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
          return Error(std::string("unknown escape \\") + static_cast<char>(c));
        }
        break;
    }
    *ranges = {{cp, cp}};
    return Status::Ok();
  }

  StatusOr<ExprPtr> ParseClass() {
    // After '['.
    bool negate = false;
    if (!AtEnd() && Peek() == '^') {
      negate = true;
      ++pos_;
    }
    Ranges ranges;
    bool first = true;
    while (true) {
      if (AtEnd()) return Error("unterminated character class");
      uint32_t c = Peek();
      if (c == ']' && !first) {
        ++pos_;
        break;
      }
      first = false;
      Ranges item;
      ++pos_;
      if (c == '\\') {
        KILN_RETURN_IF_ERROR(ParseEscape(&item, /*in_class=*/true));
      } else if (c == '[' && !AtEnd() && Peek() == ':') {
        return Error("POSIX classes [:name:] are not supported");
      } else {
        item = {{c, c}};
      }
      // Range a-b (only between single code points).
      if (item.size() == 1 && item[0].lo == item[0].hi && pos_ + 1 < cps_.size() && Peek() == '-' &&
          cps_[pos_ + 1] != ']') {
        ++pos_;
        uint32_t hc = cps_[pos_++];
        Ranges hi_item;
        if (hc == '\\') {
          KILN_RETURN_IF_ERROR(ParseEscape(&hi_item, true));
        } else {
          hi_item = {{hc, hc}};
        }
        if (hi_item.size() != 1 || hi_item[0].lo != hi_item[0].hi) {
          return Error("class range with a class endpoint");
        }
        if (hi_item[0].lo < item[0].lo) return Error("class range out of order");
        item = {{item[0].lo, hi_item[0].lo}};
      }
      ranges.insert(ranges.end(), item.begin(), item.end());
    }
    Ranges norm = NormalizeRanges(ranges);
    if (negate) norm = ComplementRanges(norm);
    return Class(norm);
  }

  StatusOr<ExprPtr> ParseAtom() {
    uint32_t c = cps_[pos_++];
    switch (c) {
      case '(': {
        if (!AtEnd() && Peek() == '?') {
          ++pos_;
          if (AtEnd()) return Error("malformed group");
          uint32_t k = cps_[pos_++];
          if (k == ':') {
            // non-capturing
          } else if (k == '<' && !AtEnd() && Peek() != '=' && Peek() != '!') {
            while (!AtEnd() && Peek() != '>') ++pos_;
            if (AtEnd()) return Error("malformed named group");
            ++pos_;
          } else if (k == '=' || k == '!' || k == '<') {
            return Error("lookaround assertions are not supported");
          } else {
            return Error("inline flags / unknown group syntax are not supported");
          }
        }
        if (++depth_ > kMaxNesting) return Error("groups nested too deeply");
        KILN_ASSIGN_OR_RETURN(ExprPtr inner, ParseAlt());
        --depth_;
        if (AtEnd() || Peek() != ')') return Error("missing ')'");
        ++pos_;
        return inner;
      }
      case '[':
        return ParseClass();
      case '.':
        return Class(DotRanges());
      case '\\': {
        Ranges r;
        KILN_RETURN_IF_ERROR(ParseEscape(&r, false));
        return Class(r);
      }
      case '^':
        return Error("'^' anchor inside the pattern is not supported");
      case '$':
        return Error("'$' anchor inside the pattern is not supported");
      case '*':
      case '+':
      case '?':
        return Error("quantifier without an operand");
      default:
        return Class({{c, c}});
    }
  }

  RegexMode mode_;
  std::vector<uint32_t> cps_;
  size_t pos_ = 0;
  int depth_ = 0;
};

}  // namespace

StatusOr<RegexResult> ParseRegex(std::string_view pattern, RegexMode mode) {
  return Parser(pattern, mode).Parse();
}

StatusOr<ExprPtr> RegexToExpr(std::string_view pattern, RegexMode mode) {
  KILN_ASSIGN_OR_RETURN(RegexResult r, ParseRegex(pattern, mode));
  return r.expr;
}

}  // namespace kiln::structured
