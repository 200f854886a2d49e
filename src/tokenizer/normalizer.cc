#include "tokenizer/normalizer.h"

#include <utf8proc.h>

#include <algorithm>
#include <cstdlib>

#include "tokenizer/added_token_matcher.h"
#include "tokenizer/pipeline_json.h"
#include "tokenizer/utf8.h"

namespace kiln::tokenizer {
namespace {

using json = nlohmann::json;

// Characters that NFC leaves alone whatever surrounds them: no canonical decomposition that
// changes under composition, combining class 0, and never the second half of a composition.
// Conservative ranges; anything else goes through utf8proc.
bool IsNfcInert(char32_t cp) {
  if (cp < 0x300) return true;                    // ASCII, Latin-1, Latin Extended-A/B
  if (cp >= 0x4E00 && cp <= 0x9FFF) return true;  // CJK Unified Ideographs
  if (cp >= 0x3400 && cp <= 0x4DBF) return true;  // CJK Extension A
  if (cp >= 0x3000 && cp <= 0x3029) return true;  // CJK symbols and punctuation
  if (cp >= 0x3030 && cp <= 0x3098) return true;  // ... and hiragana (not U+3099/309A)
  if (cp >= 0x309B && cp <= 0x30FF) return true;  // katakana
  if (cp >= 0xFF00 && cp <= 0xFFEF) return true;  // half/fullwidth forms
  if (cp >= 0x2010 && cp <= 0x2027) return true;  // general punctuation (no singletons)
  if (cp >= 0x2030 && cp <= 0x205E) return true;
  if (cp >= 0x1F300 && cp <= 0x1FAFF) return true;  // emoji
  return false;
}

bool IsInert(std::string_view text, UnicodeForm form) {
  size_t i = 0;
  while (i < text.size()) {
    const auto b0 = static_cast<uint8_t>(text[i]);
    if (b0 < 0x80) {
      ++i;
      continue;
    }
    if (form != UnicodeForm::kNfc) return false;
    // Inline decode of the common 3-byte case (CJK, kana, punctuation); the rest via DecodeUtf8.
    if ((b0 & 0xF0) == 0xE0 && i + 2 < text.size() &&
        (static_cast<uint8_t>(text[i + 1]) & 0xC0) == 0x80 &&
        (static_cast<uint8_t>(text[i + 2]) & 0xC0) == 0x80 && b0 != 0xE0 && b0 != 0xED) {
      const char32_t cp = (char32_t(b0 & 0x0F) << 12) |
                          (char32_t(static_cast<uint8_t>(text[i + 1]) & 0x3F) << 6) |
                          (static_cast<uint8_t>(text[i + 2]) & 0x3F);
      if (!IsNfcInert(cp)) return false;
      i += 3;
      continue;
    }
    char32_t cp = 0;
    const size_t n = DecodeUtf8(text, i, &cp);
    if (n == 0 || !IsNfcInert(cp)) return false;
    i += n;
  }
  return true;
}

Status ReadPattern(const json& step, std::string* literal, std::shared_ptr<const Regex>* regex) {
  const json& pattern = step.value("pattern", json());
  if (pattern.is_object() && pattern.contains("String") && pattern["String"].is_string()) {
    *literal = pattern["String"].get<std::string>();
    return Status::Ok();
  }
  if (pattern.is_object() && pattern.contains("Regex") && pattern["Regex"].is_string()) {
    auto compiled = Regex::Compile(pattern["Regex"].get<std::string>());
    if (!compiled.ok()) return compiled.status();
    *regex = std::move(compiled).value();
    return Status::Ok();
  }
  return Status::InvalidArgument(
      "Replace: 'pattern' must be {\"String\": ...} or {\"Regex\": ...}");
}

}  // namespace

namespace {

void NormalizeWithUtf8proc(std::string_view text, UnicodeForm form, std::string* out) {
  int options = UTF8PROC_STABLE;
  switch (form) {
    case UnicodeForm::kNfc:
      options |= UTF8PROC_COMPOSE;
      break;
    case UnicodeForm::kNfd:
      options |= UTF8PROC_DECOMPOSE;
      break;
    case UnicodeForm::kNfkc:
      options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
      break;
    case UnicodeForm::kNfkd:
      options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
      break;
  }
  utf8proc_uint8_t* result = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                          static_cast<utf8proc_ssize_t>(text.size()), &result,
                                          static_cast<utf8proc_option_t>(options));
  if (n < 0 || result == nullptr) {
    out->append(text);  // only for invalid UTF-8, which callers never pass
  } else {
    out->append(reinterpret_cast<const char*>(result), static_cast<size_t>(n));
  }
  std::free(result);
}

}  // namespace

void NormalizeUnicode(std::string_view text, UnicodeForm form, std::string* out) {
  out->clear();
  if (IsInert(text, form)) {
    out->assign(text);
    return;
  }
  if (form != UnicodeForm::kNfc) {
    NormalizeWithUtf8proc(text, form, out);
    return;
  }
  // NFC only changes runs of non-inert characters together with the character before each run
  // (which may compose with it); an inert character never combines backwards and blocks
  // reordering, so the text can be cut in front of it.
  out->reserve(text.size());
  size_t copied = 0;           // text[0, copied) is in *out
  size_t last_char_start = 0;  // start of the last inert character seen
  size_t i = 0;
  while (i < text.size()) {
    char32_t cp = 0;
    size_t n = DecodeUtf8(text, i, &cp);
    if (n == 0) n = 1;
    if (static_cast<uint8_t>(text[i]) < 0x80 || IsNfcInert(cp)) {
      last_char_start = i;
      i += n;
      continue;
    }
    const size_t span_begin = i > 0 ? std::max(last_char_start, copied) : 0;
    size_t j = i + n;
    while (j < text.size()) {
      size_t m = DecodeUtf8(text, j, &cp);
      if (m == 0) m = 1;
      if (static_cast<uint8_t>(text[j]) < 0x80 || IsNfcInert(cp)) break;
      j += m;
    }
    out->append(text, copied, span_begin - copied);
    NormalizeWithUtf8proc(text.substr(span_begin, j - span_begin), form, out);
    copied = j;
    i = j;
  }
  out->append(text, copied, text.size() - copied);
}

StatusOr<Normalizer> Normalizer::FromJson(const json& j) {
  std::vector<Step> steps;
  if (!j.is_null()) {
    KILN_RETURN_IF_ERROR(ForEachComponent(j, "normalizer", "normalizers",
                                          [&](const json& item, const std::string& type) {
                                            return AddFromJson(item, type, &steps);
                                          }));
  }
  return Normalizer(std::move(steps));
}

Status Normalizer::AddFromJson(const json& j, const std::string& type, std::vector<Step>* steps) {
  Step step;
  if (type == "NFC") {
    step.kind = Kind::kNfc;
  } else if (type == "NFD") {
    step.kind = Kind::kNfd;
  } else if (type == "NFKC") {
    step.kind = Kind::kNfkc;
  } else if (type == "NFKD") {
    step.kind = Kind::kNfkd;
  } else if (type == "Lowercase") {
    step.kind = Kind::kLowercase;
  } else if (type == "Prepend") {
    if (!j.contains("prepend") || !j["prepend"].is_string()) {
      return Status::InvalidArgument("normalizer Prepend: string 'prepend' expected");
    }
    step.kind = Kind::kPrepend;
    step.text = j["prepend"].get<std::string>();
  } else if (type == "Replace") {
    step.kind = Kind::kReplace;
    KILN_RETURN_IF_ERROR(ReadPattern(j, &step.text, &step.regex));
    if (!j.contains("content") || !j["content"].is_string()) {
      return Status::InvalidArgument("normalizer Replace: string 'content' expected");
    }
    step.content = j["content"].get<std::string>();
    if (step.regex == nullptr && step.text.empty()) {
      return Status::InvalidArgument("normalizer Replace: empty pattern");
    }
  } else if (type == "Strip") {
    step.kind = Kind::kStrip;
    step.left = j.value("strip_left", true);
    step.right = j.value("strip_right", true);
  } else {
    return Status::Unimplemented("normalizer type '" + type + "' is not supported");
  }
  steps->push_back(std::move(step));
  return Status::Ok();
}

void Normalizer::Apply(std::string_view text, std::string* out) const {
  out->assign(text);
  std::string next;
  for (const Step& step : steps_) {
    next.clear();
    switch (step.kind) {
      case Kind::kNfc:
        NormalizeUnicode(*out, UnicodeForm::kNfc, &next);
        break;
      case Kind::kNfd:
        NormalizeUnicode(*out, UnicodeForm::kNfd, &next);
        break;
      case Kind::kNfkc:
        NormalizeUnicode(*out, UnicodeForm::kNfkc, &next);
        break;
      case Kind::kNfkd:
        NormalizeUnicode(*out, UnicodeForm::kNfkd, &next);
        break;
      case Kind::kPrepend:
        if (out->empty()) continue;
        next = step.text;
        next += *out;
        break;
      case Kind::kReplace:
        if (step.regex != nullptr) {
          std::vector<MatchSpan> matches;
          (void)step.regex->FindAll(*out, &matches);  // on engine failure: replace what matched
          size_t last = 0;
          for (const MatchSpan& m : matches) {
            next.append(*out, last, m.begin - last);
            next += step.content;
            last = m.end;
          }
          next.append(*out, last);
        } else {
          size_t last = 0;
          for (size_t found; (found = out->find(step.text, last)) != std::string::npos;) {
            next.append(*out, last, found - last);
            next += step.content;
            last = found + step.text.size();
          }
          next.append(*out, last);
        }
        break;
      case Kind::kLowercase: {
        size_t i = 0;
        while (i < out->size()) {
          char32_t cp = 0;
          const size_t n = DecodeUtf8(*out, i, &cp);
          if (n == 0) {
            next.push_back((*out)[i++]);
            continue;
          }
          AppendUtf8(static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp))),
                     &next);
          i += n;
        }
        break;
      }
      case Kind::kStrip: {
        size_t begin = 0, end = out->size();
        char32_t cp = 0;
        size_t n = 0;
        while (step.left && begin < end && (n = DecodeUtf8(*out, begin, &cp)) > 0 &&
               IsUnicodeWhitespace(cp)) {
          begin += n;
        }
        while (step.right && end > begin) {
          size_t b = end - 1;
          while (b > begin && (static_cast<uint8_t>((*out)[b]) & 0xC0) == 0x80) --b;
          if (DecodeUtf8(*out, b, &cp) == 0 || !IsUnicodeWhitespace(cp)) break;
          end = b;
        }
        next.assign(*out, begin, end - begin);
        break;
      }
    }
    out->swap(next);
  }
}

}  // namespace kiln::tokenizer
