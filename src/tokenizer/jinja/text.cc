#include "tokenizer/jinja/text.h"
#include "common/utf8_encode.h"

#include <utf8proc.h>

#include <charconv>
#include <cmath>
#include <cstdio>

namespace kiln::jinja {

bool IsAscii(std::string_view s) {
  for (unsigned char c : s) {
    if (c >= 0x80) return false;
  }
  return true;
}

uint32_t DecodeUtf8(std::string_view s, size_t* pos) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  size_t i = *pos;
  unsigned char c = byte(i);
  if (c < 0x80) {
    *pos = i + 1;
    return c;
  }
  int len = 0;
  uint32_t cp = 0;
  if ((c & 0xE0) == 0xC0) {
    len = 2;
    cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3;
    cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4;
    cp = c & 0x07;
  } else {
    *pos = i + 1;
    return 0xFFFD;
  }
  if (i + len > s.size()) {
    *pos = i + 1;
    return 0xFFFD;
  }
  for (int k = 1; k < len; ++k) {
    unsigned char cc = byte(i + k);
    if ((cc & 0xC0) != 0x80) {
      *pos = i + 1;
      return 0xFFFD;
    }
    cp = (cp << 6) | (cc & 0x3F);
  }
  *pos = i + len;
  return cp;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  EncodeUtf8(static_cast<uint32_t>(cp), out);
}

size_t CodepointCount(std::string_view s) {
  size_t n = 0;
  for (size_t pos = 0; pos < s.size();) {
    DecodeUtf8(s, &pos);
    ++n;
  }
  return n;
}

std::vector<size_t> CodepointOffsets(std::string_view s) {
  std::vector<size_t> offsets;
  offsets.reserve(s.size() + 1);
  for (size_t pos = 0; pos < s.size();) {
    offsets.push_back(pos);
    DecodeUtf8(s, &pos);
  }
  offsets.push_back(s.size());
  return offsets;
}

bool IsPyWhitespace(uint32_t cp) {
  switch (cp) {
    case 0x09:
    case 0x0A:
    case 0x0B:
    case 0x0C:
    case 0x0D:
    case 0x1C:
    case 0x1D:
    case 0x1E:
    case 0x1F:
    case 0x20:
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

namespace {

bool InChars(uint32_t cp, const std::string* chars) {
  if (chars == nullptr) return IsPyWhitespace(cp);
  for (size_t pos = 0; pos < chars->size();) {
    if (DecodeUtf8(*chars, &pos) == cp) return true;
  }
  return false;
}

}  // namespace

std::string_view PyStrip(std::string_view s, const std::string* chars, bool left, bool right) {
  size_t begin = 0;
  size_t end = s.size();
  if (left) {
    while (begin < end) {
      size_t next = begin;
      uint32_t cp = DecodeUtf8(s, &next);
      if (!InChars(cp, chars)) break;
      begin = next;
    }
  }
  if (right) {
    while (end > begin) {
      size_t start = end - 1;
      while (start > begin && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
      size_t next = start;
      uint32_t cp = DecodeUtf8(s, &next);
      if (next != end) {  // invalid tail: treat the last byte as one unit
        start = end - 1;
        next = start;
        cp = DecodeUtf8(s, &next);
      }
      if (!InChars(cp, chars)) break;
      end = start;
    }
  }
  return s.substr(begin, end - begin);
}

std::vector<std::string> PySplit(std::string_view s, const std::string* sep, int64_t maxsplit,
                                 bool from_right) {
  std::vector<std::string> parts;
  if (sep != nullptr) {
    if (!from_right) {
      size_t start = 0;
      while (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) {
        size_t hit = s.find(*sep, start);
        if (hit == std::string_view::npos) break;
        parts.emplace_back(s.substr(start, hit - start));
        start = hit + sep->size();
      }
      parts.emplace_back(s.substr(start));
    } else {
      size_t end = s.size();
      int64_t splits = 0;
      std::vector<std::string> rev;
      while (maxsplit < 0 || splits < maxsplit) {
        if (end < sep->size()) break;
        size_t hit = s.rfind(*sep, end - sep->size());
        if (hit == std::string_view::npos) break;
        rev.emplace_back(s.substr(hit + sep->size(), end - hit - sep->size()));
        end = hit;
        ++splits;
      }
      rev.emplace_back(s.substr(0, end));
      parts.assign(rev.rbegin(), rev.rend());
    }
    return parts;
  }
  // Whitespace split: runs of whitespace separate, leading/trailing ignored.
  std::vector<std::pair<size_t, size_t>> words;  // [begin, end)
  size_t pos = 0;
  while (pos < s.size()) {
    size_t next = pos;
    uint32_t cp = DecodeUtf8(s, &next);
    if (IsPyWhitespace(cp)) {
      pos = next;
      continue;
    }
    size_t begin = pos;
    while (pos < s.size()) {
      next = pos;
      cp = DecodeUtf8(s, &next);
      if (IsPyWhitespace(cp)) break;
      pos = next;
    }
    words.emplace_back(begin, pos);
  }
  if (maxsplit >= 0 && static_cast<int64_t>(words.size()) > maxsplit + 1) {
    if (!from_right) {
      for (int64_t i = 0; i < maxsplit; ++i) {
        parts.emplace_back(s.substr(words[i].first, words[i].second - words[i].first));
      }
      std::string_view rest = s.substr(words[maxsplit].first);
      parts.emplace_back(PyStrip(rest, nullptr, false, true));
    } else {
      size_t keep = words.size() - maxsplit;
      std::string_view head = s.substr(0, words[keep - 1].second);
      parts.emplace_back(PyStrip(head, nullptr, true, false));
      for (size_t i = keep; i < words.size(); ++i) {
        parts.emplace_back(s.substr(words[i].first, words[i].second - words[i].first));
      }
    }
    return parts;
  }
  for (const auto& [b, e] : words) parts.emplace_back(s.substr(b, e - b));
  return parts;
}

namespace {

std::string MapCase(std::string_view s, bool upper) {
  std::string out;
  out.reserve(s.size());
  for (size_t pos = 0; pos < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[pos]);
    if (c < 0x80) {
      if (upper && c >= 'a' && c <= 'z') c = static_cast<unsigned char>(c - 32);
      if (!upper && c >= 'A' && c <= 'Z') c = static_cast<unsigned char>(c + 32);
      out.push_back(static_cast<char>(c));
      ++pos;
      continue;
    }
    size_t start = pos;
    uint32_t cp = DecodeUtf8(s, &pos);
    if (cp == 0xFFFD && pos == start + 1) {  // invalid byte: keep as is
      out.push_back(s[start]);
      continue;
    }
    auto mapped = upper ? utf8proc_toupper(static_cast<utf8proc_int32_t>(cp))
                        : utf8proc_tolower(static_cast<utf8proc_int32_t>(cp));
    AppendUtf8(static_cast<uint32_t>(mapped), &out);
  }
  return out;
}

}  // namespace

std::string PyUpper(std::string_view s) { return MapCase(s, true); }
std::string PyLower(std::string_view s) { return MapCase(s, false); }

std::string PyCapitalize(std::string_view s) {
  std::string out = PyLower(s);
  if (!out.empty() && out[0] >= 'a' && out[0] <= 'z') out[0] = static_cast<char>(out[0] - 32);
  return out;
}

std::string PyTitle(std::string_view s) {
  std::string out(s);
  bool prev_cased = false;
  for (char& c : out) {
    bool lower = c >= 'a' && c <= 'z';
    bool upper = c >= 'A' && c <= 'Z';
    if (lower && !prev_cased) c = static_cast<char>(c - 32);
    if (upper && prev_cased) c = static_cast<char>(c + 32);
    prev_cased = lower || upper || (static_cast<unsigned char>(c) >= 0x80);
  }
  return out;
}

std::string PyReplace(std::string_view s, std::string_view from, std::string_view to,
                      int64_t count) {
  std::string out;
  if (from.empty()) {
    // CPython inserts `to` between every code point (and at both ends).
    int64_t done = 0;
    size_t pos = 0;
    while (pos < s.size()) {
      if (count < 0 || done < count) {
        out.append(to);
        ++done;
      }
      size_t next = pos;
      DecodeUtf8(s, &next);
      out.append(s.substr(pos, next - pos));
      pos = next;
    }
    if (count < 0 || done < count) out.append(to);
    return out;
  }
  size_t start = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    size_t hit = s.find(from, start);
    if (hit == std::string_view::npos) break;
    out.append(s.substr(start, hit - start));
    out.append(to);
    start = hit + from.size();
    ++done;
  }
  out.append(s.substr(start));
  return out;
}

std::string PyReprString(std::string_view s) {
  bool has_single = s.find('\'') != std::string_view::npos;
  bool has_double = s.find('"') != std::string_view::npos;
  char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, quote);
  for (size_t pos = 0; pos < s.size();) {
    size_t start = pos;
    uint32_t cp = DecodeUtf8(s, &pos);
    if (cp == static_cast<uint32_t>(quote) || cp == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(cp));
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0)) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", cp);
      out += buf;
    } else {
      out.append(s.substr(start, pos - start));
    }
  }
  out.push_back(quote);
  return out;
}

std::string PyFloatRepr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  std::string_view sci(buf, res.ptr - buf);
  std::string out;
  if (!sci.empty() && sci[0] == '-') {
    out.push_back('-');
    sci.remove_prefix(1);
  }
  size_t e_pos = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, e_pos)) {
    if (c != '.') digits.push_back(c);
  }
  int exp = std::stoi(std::string(sci.substr(e_pos + 1)));
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  if (exp >= -4 && exp < 16) {
    if (exp >= 0) {
      std::string int_part = digits.substr(0, std::min<size_t>(digits.size(), exp + 1));
      while (static_cast<int>(int_part.size()) < exp + 1) int_part.push_back('0');
      std::string frac = digits.size() > static_cast<size_t>(exp + 1) ? digits.substr(exp + 1) : "";
      out += int_part;
      out += '.';
      out += frac.empty() ? "0" : frac;
    } else {
      out += "0.";
      out.append(static_cast<size_t>(-exp - 1), '0');
      out += digits;
    }
    return out;
  }
  out += digits[0];
  if (digits.size() > 1) {
    out += '.';
    out += digits.substr(1);
  }
  char ebuf[16];
  std::snprintf(ebuf, sizeof(ebuf), "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
  out += ebuf;
  return out;
}

}  // namespace kiln::jinja
