#include "structured/grammar.h"

#include <algorithm>
#include <cstdio>

#include "common/utf8_encode.h"

namespace kiln::structured {
namespace {

ExprPtr Make(Expr e) { return std::make_shared<const Expr>(std::move(e)); }

constexpr uint32_t kMaxCodePoint = 0x10FFFF;

// Splits [lo, hi] (same UTF-8 length, no surrogates) into byte-range sequences.
void SplitUtf8(uint32_t lo, uint32_t hi, std::vector<ExprPtr>* out) {
  if (lo > hi) return;
  for (uint32_t max : {0x7Fu, 0x7FFu, 0xFFFFu}) {
    if (lo <= max && hi > max) {
      SplitUtf8(lo, max, out);
      SplitUtf8(max + 1, hi, out);
      return;
    }
  }
  if (hi <= 0x7F) {
    out->push_back(ByteRange(static_cast<uint8_t>(lo), static_cast<uint8_t>(hi)));
    return;
  }
  int n = hi <= 0x7FF ? 2 : hi <= 0xFFFF ? 3 : 4;
  for (int i = 1; i < n; ++i) {
    uint32_t m = (1u << (6 * i)) - 1;
    if ((lo & ~m) != (hi & ~m)) {
      if ((lo & m) != 0) {
        SplitUtf8(lo, lo | m, out);
        SplitUtf8((lo | m) + 1, hi, out);
        return;
      }
      if ((hi & m) != m) {
        SplitUtf8(lo, (hi & ~m) - 1, out);
        SplitUtf8(hi & ~m, hi, out);
        return;
      }
    }
  }
  std::string a, b;
  AppendUtf8(lo, &a);
  AppendUtf8(hi, &b);
  std::vector<ExprPtr> seq;
  for (size_t i = 0; i < a.size(); ++i) {
    seq.push_back(ByteRange(static_cast<uint8_t>(a[i]), static_cast<uint8_t>(b[i])));
  }
  out->push_back(Seq(std::move(seq)));
}

void Render(const ExprPtr& e, const Grammar& g, std::string* out) {
  switch (e->kind) {
    case Expr::Kind::kEmpty:
      *out += "\"\"";
      return;
    case Expr::Kind::kNothing:
      *out += "!";
      return;
    case Expr::Kind::kBytes: {
      *out += "[";
      for (int b = 0; b < 256; ++b) {
        if (!e->bytes.test(b)) continue;
        int c = b;
        while (c + 1 < 256 && e->bytes.test(c + 1)) ++c;
        char buf[24];
        if (c == b) {
          std::snprintf(buf, sizeof(buf), "\\x%02X", b);
        } else {
          std::snprintf(buf, sizeof(buf), "\\x%02X-\\x%02X", b, c);
        }
        *out += buf;
        b = c;
      }
      *out += "]";
      return;
    }
    case Expr::Kind::kSeq:
    case Expr::Kind::kAlt:
      *out += "(";
      for (size_t i = 0; i < e->children.size(); ++i) {
        if (i) *out += e->kind == Expr::Kind::kAlt ? " | " : " ";
        Render(e->children[i], g, out);
      }
      *out += ")";
      return;
    case Expr::Kind::kRepeat:
      Render(e->children[0], g, out);
      *out += "{" + std::to_string(e->min_repeat) + "," +
              (e->max_repeat < 0 ? std::string() : std::to_string(e->max_repeat)) + "}";
      return;
    case Expr::Kind::kRef:
      *out +=
          e->rule >= 0 && e->rule < static_cast<int>(g.rules.size()) ? g.rules[e->rule].name : "?";
      return;
  }
}

}  // namespace

ExprPtr Empty() {
  static const ExprPtr e = Make(Expr{Expr::Kind::kEmpty});
  return e;
}

ExprPtr Nothing() {
  static const ExprPtr e = Make(Expr{Expr::Kind::kNothing});
  return e;
}

ExprPtr Bytes(const std::bitset<256>& set) {
  if (set.none()) return Nothing();
  Expr e{Expr::Kind::kBytes};
  e.bytes = set;
  return Make(std::move(e));
}

ExprPtr ByteRange(uint8_t lo, uint8_t hi) {
  std::bitset<256> s;
  for (int b = lo; b <= hi; ++b) s.set(b);
  return Bytes(s);
}

ExprPtr Literal(std::string_view bytes) {
  std::vector<ExprPtr> seq;
  for (char c : bytes) seq.push_back(ByteRange(static_cast<uint8_t>(c), static_cast<uint8_t>(c)));
  return Seq(std::move(seq));
}

ExprPtr Seq(std::vector<ExprPtr> children) {
  std::vector<ExprPtr> kept;
  for (auto& c : children) {
    if (c->kind == Expr::Kind::kNothing) return Nothing();
    if (c->kind == Expr::Kind::kEmpty) continue;
    if (c->kind == Expr::Kind::kSeq) {
      kept.insert(kept.end(), c->children.begin(), c->children.end());
    } else {
      kept.push_back(std::move(c));
    }
  }
  if (kept.empty()) return Empty();
  if (kept.size() == 1) return kept[0];
  Expr e{Expr::Kind::kSeq};
  e.children = std::move(kept);
  return Make(std::move(e));
}

ExprPtr Alt(std::vector<ExprPtr> children) {
  std::vector<ExprPtr> kept;
  for (auto& c : children) {
    if (c->kind == Expr::Kind::kNothing) continue;
    if (c->kind == Expr::Kind::kAlt) {
      kept.insert(kept.end(), c->children.begin(), c->children.end());
    } else {
      kept.push_back(std::move(c));
    }
  }
  if (kept.empty()) return Nothing();
  if (kept.size() == 1) return kept[0];
  Expr e{Expr::Kind::kAlt};
  e.children = std::move(kept);
  return Make(std::move(e));
}

ExprPtr Repeat(ExprPtr child, int min_repeat, int max_repeat) {
  if (max_repeat >= 0 && max_repeat < min_repeat) return Nothing();
  if (max_repeat == 0) return Empty();
  if (min_repeat == 1 && max_repeat == 1) return child;
  if (child->kind == Expr::Kind::kEmpty) return Empty();
  if (child->kind == Expr::Kind::kNothing) return min_repeat == 0 ? Empty() : Nothing();
  Expr e{Expr::Kind::kRepeat};
  e.children = {std::move(child)};
  e.min_repeat = min_repeat;
  e.max_repeat = max_repeat;
  return Make(std::move(e));
}

ExprPtr Ref(int rule) {
  Expr e{Expr::Kind::kRef};
  e.rule = rule;
  return Make(std::move(e));
}

std::vector<CodePointRange> NormalizeRanges(std::vector<CodePointRange> ranges) {
  std::vector<CodePointRange> split;
  for (auto r : ranges) {
    if (r.lo > r.hi || r.lo > kMaxCodePoint) continue;
    r.hi = std::min(r.hi, kMaxCodePoint);
    if (r.lo < 0xD800 && r.hi > 0xDFFF) {
      split.push_back({r.lo, 0xD7FF});
      split.push_back({0xE000, r.hi});
    } else if (r.hi < 0xD800 || r.lo > 0xDFFF) {
      split.push_back(r);
    } else {
      if (r.lo < 0xD800) split.push_back({r.lo, 0xD7FF});
      if (r.hi > 0xDFFF) split.push_back({0xE000, r.hi});
    }
  }
  std::sort(split.begin(), split.end(),
            [](const CodePointRange& a, const CodePointRange& b) { return a.lo < b.lo; });
  std::vector<CodePointRange> out;
  for (const auto& r : split) {
    if (!out.empty() && r.lo <= out.back().hi + 1) {
      out.back().hi = std::max(out.back().hi, r.hi);
    } else {
      out.push_back(r);
    }
  }
  return out;
}

std::vector<CodePointRange> ComplementRanges(const std::vector<CodePointRange>& ranges) {
  std::vector<CodePointRange> norm = NormalizeRanges(ranges);
  std::vector<CodePointRange> out;
  uint32_t next = 0;
  for (const auto& r : norm) {
    if (r.lo > next) out.push_back({next, r.lo - 1});
    next = r.hi + 1;
  }
  if (next <= kMaxCodePoint) out.push_back({next, kMaxCodePoint});
  return NormalizeRanges(out);
}

void AppendUtf8(uint32_t cp, std::string* out) { EncodeUtf8(static_cast<uint32_t>(cp), out); }

ExprPtr Utf8Class(const std::vector<CodePointRange>& ranges) {
  std::vector<ExprPtr> alts;
  std::bitset<256> ascii;
  for (const auto& r : NormalizeRanges(ranges)) {
    if (r.lo < 0x80) {
      for (uint32_t c = r.lo; c <= std::min(r.hi, 0x7Fu); ++c) ascii.set(c);
    }
    if (r.hi >= 0x80) SplitUtf8(std::max(r.lo, 0x80u), r.hi, &alts);
  }
  if (ascii.any()) alts.insert(alts.begin(), Bytes(ascii));
  return Alt(std::move(alts));
}

ExprPtr JsonEncodedClass(const std::vector<CodePointRange>& ranges) {
  std::vector<CodePointRange> norm = NormalizeRanges(ranges);
  std::vector<ExprPtr> alts;
  std::bitset<256> plain;
  std::vector<CodePointRange> non_ascii;
  for (const auto& r : norm) {
    for (uint32_t c = r.lo; c <= std::min(r.hi, 0x7Fu); ++c) {
      if (c == '"') {
        alts.push_back(Literal("\\\""));
      } else if (c == '\\') {
        alts.push_back(Literal("\\\\"));
      } else if (c < 0x20) {
        static const char* kShort[32] = {nullptr, nullptr, nullptr, nullptr, nullptr,
                                         nullptr, nullptr, nullptr, "\\b",   "\\t",
                                         "\\n",   nullptr, "\\f",   "\\r"};
        if (c < 14 && kShort[c] != nullptr) {
          alts.push_back(Literal(kShort[c]));
        } else {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04X", c);
          alts.push_back(Literal(buf));
        }
      } else {
        plain.set(c);
      }
    }
    if (r.hi >= 0x80) non_ascii.push_back({std::max(r.lo, 0x80u), r.hi});
  }
  if (plain.any()) alts.insert(alts.begin(), Bytes(plain));
  if (!non_ascii.empty()) alts.push_back(Utf8Class(non_ascii));
  return Alt(std::move(alts));
}

ExprPtr JsonStringChar() {
  static const ExprPtr e = [] {
    std::bitset<256> plain;
    for (int c = 0x20; c < 0x80; ++c) {
      if (c != '"' && c != '\\') plain.set(c);
    }
    std::bitset<256> esc;
    for (char c : std::string("\"\\/bfnrt")) esc.set(static_cast<uint8_t>(c));
    std::bitset<256> hex, hex_no_d;
    for (char c : std::string("0123456789abcdefABCDEF")) hex.set(static_cast<uint8_t>(c));
    hex_no_d = hex;
    hex_no_d.reset('d');
    hex_no_d.reset('D');
    std::bitset<256> oct;
    for (char c = '0'; c <= '7'; ++c) oct.set(static_cast<uint8_t>(c));
    // \uXXXX without surrogates: first digit not d/D, or d/D followed by 0-7.
    ExprPtr u =
        Seq({Literal("\\u"),
             Alt({Seq({Bytes(hex_no_d), Bytes(hex), Bytes(hex), Bytes(hex)}),
                  Seq({Alt({Literal("d"), Literal("D")}), Bytes(oct), Bytes(hex), Bytes(hex)})})});
    return Alt(
        {Bytes(plain), Seq({Literal("\\"), Bytes(esc)}), u, Utf8Class({{0x80, kMaxCodePoint}})});
  }();
  return e;
}

namespace {

bool Productive(const Expr& e, const std::vector<char>& rules) {
  switch (e.kind) {
    case Expr::Kind::kEmpty:
      return true;
    case Expr::Kind::kNothing:
      return false;
    case Expr::Kind::kBytes:
      return e.bytes.any();
    case Expr::Kind::kSeq:
      for (const auto& c : e.children) {
        if (!Productive(*c, rules)) return false;
      }
      return true;
    case Expr::Kind::kAlt:
      for (const auto& c : e.children) {
        if (Productive(*c, rules)) return true;
      }
      return false;
    case Expr::Kind::kRepeat:
      return e.min_repeat == 0 || Productive(*e.children[0], rules);
    case Expr::Kind::kRef:
      return rules[e.rule] != 0;
  }
  return false;
}

}  // namespace

bool IsEmptyLanguage(const Grammar& grammar) {
  const size_t n = grammar.rules.size();
  std::vector<char> productive(n, 0);
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t r = 0; r < n; ++r) {
      if (!productive[r] && grammar.rules[r].body &&
          Productive(*grammar.rules[r].body, productive)) {
        productive[r] = 1;
        changed = true;
      }
    }
  }
  return grammar.root < 0 || !productive[grammar.root];
}

std::string ToString(const Grammar& grammar) {
  std::string out;
  for (size_t i = 0; i < grammar.rules.size(); ++i) {
    out += grammar.rules[i].name + (static_cast<int>(i) == grammar.root ? " (root)" : "") + " ::= ";
    if (grammar.rules[i].body) Render(grammar.rules[i].body, grammar, &out);
    out += "\n";
  }
  return out;
}

}  // namespace kiln::structured
