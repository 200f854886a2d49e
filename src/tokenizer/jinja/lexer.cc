#include "tokenizer/jinja/lexer.h"

#include <algorithm>
#include <cstdint>

#include "tokenizer/jinja/text.h"

namespace kiln::jinja {
namespace {

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}
// Non-ASCII bytes are accepted in names (Jinja allows Unicode identifiers).
bool IsNameStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
         (static_cast<unsigned char>(c) >= 0x80);
}
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsNameChar(char c) { return IsNameStart(c) || IsDigit(c); }

class Lexer final {
 public:
  explicit Lexer(std::string_view source) {
    // Normalize \r\n and \r to \n, then drop one trailing newline (keep_trailing_newline=False).
    src_.reserve(source.size());
    for (size_t i = 0; i < source.size(); ++i) {
      if (source[i] == '\r') {
        src_.push_back('\n');
        if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
      } else {
        src_.push_back(source[i]);
      }
    }
    if (!src_.empty() && src_.back() == '\n') src_.pop_back();
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i) {
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
    }
  }

  std::vector<Token> Run() {
    size_t pos = 0;
    bool line_starting = true;
    while (pos < src_.size()) {
      size_t at = FindTagStart(pos);
      std::string_view text(src_.data() + pos, (at == std::string::npos ? src_.size() : at) - pos);
      if (at == std::string::npos) {
        EmitText(text, pos);
        break;
      }
      char kind = src_[at + 1];
      char sign = at + 2 < src_.size() ? src_[at + 2] : '\0';
      if (sign == '-') {
        text = PyStrip(text, nullptr, false, true);
      } else if (sign != '+' && (kind == '%' || kind == '#')) {
        size_t nl = text.rfind('\n');
        size_t l_pos = nl == std::string_view::npos ? 0 : nl + 1;
        if (l_pos > 0 || line_starting) {
          std::string_view tail = text.substr(l_pos);
          if (std::all_of(tail.begin(), tail.end(), [](char c) { return IsSpace(c); })) {
            text = text.substr(0, l_pos);
          }
        }
      }
      EmitText(text, pos);
      size_t body = at + 2 + ((sign == '-' || sign == '+') ? 1 : 0);
      if (kind == '#') {
        pos = LexCommentEnd(at, body);
      } else if (kind == '%' && IsRawStart(body)) {
        pos = LexRaw(at, body);
      } else {
        pos = LexTag(at, body, kind == '%');
      }
      line_starting = pos > 0 && src_[pos - 1] == '\n';
    }
    tokens_.push_back({TokenType::kEof, "", Loc(src_.size())});
    return std::move(tokens_);
  }

 private:
  SourceLoc Loc(size_t offset) const {
    auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
    size_t line = static_cast<size_t>(it - line_starts_.begin());
    return {static_cast<int>(line), static_cast<int>(offset - line_starts_[line - 1] + 1)};
  }

  size_t FindTagStart(size_t from) const {
    for (size_t i = src_.find('{', from); i != std::string::npos; i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) {
        return i;
      }
    }
    return std::string::npos;
  }

  void EmitText(std::string_view text, size_t offset) {
    if (!text.empty()) tokens_.push_back({TokenType::kText, std::string(text), Loc(offset)});
  }

  // After a tag end at `pos`: `-` strips all following whitespace; a plain block/comment end
  // drops one newline (trim_blocks).
  size_t AfterTagEnd(size_t pos, char sign, bool is_block) const {
    if (sign == '-') {
      std::string_view rest(src_.data() + pos, src_.size() - pos);
      return src_.size() - PyStrip(rest, nullptr, true, false).size();
    }
    if (sign != '+' && is_block && pos < src_.size() && src_[pos] == '\n') return pos + 1;
    return pos;
  }

  size_t LexCommentEnd(size_t at, size_t body) {
    size_t end = src_.find("#}", body);
    if (end == std::string::npos) ThrowSyntax(Loc(at), "unterminated comment (missing '#}')");
    char sign = (end > body && (src_[end - 1] == '-' || src_[end - 1] == '+')) ? src_[end - 1] : 0;
    return AfterTagEnd(end + 2, sign, true);
  }

  // `{% raw %}` (with optional signs) starting at body?
  bool IsRawStart(size_t body) const {
    size_t i = body;
    while (i < src_.size() && IsSpace(src_[i])) ++i;
    if (src_.compare(i, 3, "raw") != 0 || (i + 3 < src_.size() && IsNameChar(src_[i + 3]))) {
      return false;
    }
    i += 3;
    while (i < src_.size() && IsSpace(src_[i])) ++i;
    if (i < src_.size() && (src_[i] == '-' || src_[i] == '+')) ++i;
    return src_.compare(i, 2, "%}") == 0;
  }

  size_t LexRaw(size_t at, size_t body) {
    size_t close = src_.find("%}", body);
    char open_sign = src_[close - 1] == '-' || src_[close - 1] == '+' ? src_[close - 1] : 0;
    size_t content = AfterTagEnd(close + 2, open_sign, true);
    for (size_t i = src_.find("{%", content); i != std::string::npos; i = src_.find("{%", i + 2)) {
      size_t j = i + 2;
      char end_sign = 0;
      if (j < src_.size() && (src_[j] == '-' || src_[j] == '+')) end_sign = src_[j++];
      while (j < src_.size() && IsSpace(src_[j])) ++j;
      if (src_.compare(j, 6, "endraw") != 0) continue;
      j += 6;
      while (j < src_.size() && IsSpace(src_[j])) ++j;
      char tail_sign = 0;
      if (j < src_.size() && (src_[j] == '-' || src_[j] == '+')) tail_sign = src_[j++];
      if (src_.compare(j, 2, "%}") != 0) continue;
      std::string_view text(src_.data() + content, i - content);
      if (end_sign == '-') text = PyStrip(text, nullptr, false, true);
      EmitText(text, content);
      return AfterTagEnd(j + 2, tail_sign, true);
    }
    ThrowSyntax(Loc(at), "unterminated raw block (missing '{% endraw %}')");
  }

  size_t LexTag(size_t at, size_t body, bool is_block) {
    tokens_.push_back({is_block ? TokenType::kBlockBegin : TokenType::kVarBegin, "", Loc(at)});
    const char* close = is_block ? "%}" : "}}";
    std::vector<char> brackets;
    size_t i = body;
    while (true) {
      while (i < src_.size() && IsSpace(src_[i])) ++i;
      if (i >= src_.size()) {
        ThrowSyntax(Loc(at),
                    std::string("unexpected end of template: tag is missing its '") + close + "'");
      }
      char c = src_[i];
      if (brackets.empty()) {
        char sign = 0;
        size_t j = i;
        if ((c == '-' || c == '+') && src_.compare(i + 1, 2, close) == 0) {
          sign = c;
          j = i + 1;
        }
        if (src_.compare(j, 2, close) == 0 && (sign != '+' || is_block)) {
          tokens_.push_back({is_block ? TokenType::kBlockEnd : TokenType::kVarEnd, "", Loc(i)});
          return AfterTagEnd(j + 2, sign, is_block);
        }
      }
      if (IsNameStart(c)) {
        size_t start = i;
        while (i < src_.size() && IsNameChar(src_[i])) ++i;
        tokens_.push_back({TokenType::kName, src_.substr(start, i - start), Loc(start)});
      } else if (IsDigit(c)) {
        i = LexNumber(i);
      } else if (c == '\'' || c == '"') {
        i = LexString(i);
      } else {
        i = LexOperator(i, &brackets);
      }
    }
  }

  size_t LexNumber(size_t start) {
    size_t i = start;
    auto digits = [&] {
      while (i < src_.size() && (IsDigit(src_[i]) ||
                                 (src_[i] == '_' && i + 1 < src_.size() && IsDigit(src_[i + 1])))) {
        ++i;
      }
    };
    digits();
    bool is_float = false;
    if (i + 1 < src_.size() && src_[i] == '.' && IsDigit(src_[i + 1])) {
      is_float = true;
      ++i;
      digits();
    }
    if (i < src_.size() && (src_[i] == 'e' || src_[i] == 'E')) {
      size_t j = i + 1;
      if (j < src_.size() && (src_[j] == '+' || src_[j] == '-')) ++j;
      if (j < src_.size() && IsDigit(src_[j])) {
        is_float = true;
        i = j;
        digits();
      }
    }
    std::string text;
    for (size_t k = start; k < i; ++k) {
      if (src_[k] != '_') text.push_back(src_[k]);
    }
    tokens_.push_back({is_float ? TokenType::kFloat : TokenType::kInt, text, Loc(start)});
    return i;
  }

  static int HexValue(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  size_t LexString(size_t start) {
    char quote = src_[start];
    std::string value;
    size_t i = start + 1;
    while (true) {
      if (i >= src_.size()) ThrowSyntax(Loc(start), "unterminated string literal");
      char c = src_[i];
      if (c == quote) break;
      if (c != '\\') {
        value.push_back(c);
        ++i;
        continue;
      }
      if (i + 1 >= src_.size()) ThrowSyntax(Loc(start), "unterminated string literal");
      char e = src_[i + 1];
      i += 2;
      switch (e) {
        case 'n':
          value.push_back('\n');
          break;
        case 't':
          value.push_back('\t');
          break;
        case 'r':
          value.push_back('\r');
          break;
        case 'b':
          value.push_back('\b');
          break;
        case 'f':
          value.push_back('\f');
          break;
        case 'v':
          value.push_back('\v');
          break;
        case 'a':
          value.push_back('\a');
          break;
        case '0':
          value.push_back('\0');
          break;
        case '\\':
          value.push_back('\\');
          break;
        case '\'':
          value.push_back('\'');
          break;
        case '"':
          value.push_back('"');
          break;
        case '\n':
          break;  // line continuation
        case 'x':
        case 'u':
        case 'U': {
          int n = e == 'x' ? 2 : (e == 'u' ? 4 : 8);
          uint32_t cp = 0;
          for (int k = 0; k < n; ++k) {
            int h = i + k < src_.size() ? HexValue(src_[i + k]) : -1;
            if (h < 0) ThrowSyntax(Loc(i - 2), std::string("bad \\") + e + " escape in string");
            cp = cp * 16 + static_cast<uint32_t>(h);
          }
          if (cp > 0x10FFFF) ThrowSyntax(Loc(i - 2), "escape out of Unicode range");
          i += n;
          AppendUtf8(cp, &value);
          break;
        }
        default:  // Python keeps unknown escapes as written
          value.push_back('\\');
          value.push_back(e);
      }
    }
    tokens_.push_back({TokenType::kString, std::move(value), Loc(start)});
    return i + 1;
  }

  size_t LexOperator(size_t i, std::vector<char>* brackets) {
    static constexpr std::string_view kTwo[] = {"//", "**", "==", "!=", "<=", ">="};
    for (std::string_view op : kTwo) {
      if (src_.compare(i, 2, op) == 0) {
        tokens_.push_back({TokenType::kOperator, std::string(op), Loc(i)});
        return i + 2;
      }
    }
    char c = src_[i];
    static constexpr std::string_view kOne = "+-*/%~<>=()[]{},.:|";
    if (kOne.find(c) == std::string_view::npos) {
      ThrowSyntax(Loc(i), std::string("unexpected character '") + c + "' in tag");
    }
    if (c == '(' || c == '[' || c == '{') brackets->push_back(c);
    if (c == ')' || c == ']' || c == '}') {
      char open = c == ')' ? '(' : (c == ']' ? '[' : '{');
      if (brackets->empty() || brackets->back() != open) {
        ThrowSyntax(Loc(i), std::string("unexpected '") + c + "'");
      }
      brackets->pop_back();
    }
    tokens_.push_back({TokenType::kOperator, std::string(1, c), Loc(i)});
    return i + 1;
  }

  std::string src_;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> Tokenize(std::string_view source) { return Lexer(source).Run(); }

}  // namespace kiln::jinja
