#include "tokenizer/decoder.h"

#include "tokenizer/byte_level.h"
#include "tokenizer/pipeline_json.h"
#include "tokenizer/utf8.h"

namespace kiln::tokenizer {
namespace {

using json = nlohmann::json;

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

void ReplaceAll(std::string* s, std::string_view from, std::string_view to) {
  if (from.empty() || s->find(from) == std::string::npos) return;
  std::string out;
  size_t last = 0;
  for (size_t at; (at = s->find(from, last)) != std::string::npos; last = at + from.size()) {
    out.append(*s, last, at - last);
    out += to;
  }
  out.append(*s, last);
  s->swap(out);
}

// One piece → the bytes of its byte-level characters (a piece with a character outside the
// alphabet stays as it is, as in HF).
void AppendByteLevel(std::string_view piece, std::string* out) {
  std::string bytes;
  if (ByteLevelToBytes(piece, &bytes)) {
    out->append(bytes);
  } else {
    out->append(piece);
  }
}

size_t Utf8CharLen(char lead) {
  const auto b = static_cast<uint8_t>(lead);
  return b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
}

// HF Strip on one piece: up to `start` leading and `stop` trailing `content` characters go.
std::string StripPiece(const std::string& piece, std::string_view content, size_t start,
                       size_t stop) {
  size_t begin = 0;
  for (size_t i = 0;
       i < start && begin < piece.size() && piece.compare(begin, content.size(), content) == 0;
       ++i) {
    begin += content.size();
  }
  size_t end = piece.size();
  for (size_t i = 0; i < stop && end >= begin + content.size() &&
                     piece.compare(end - content.size(), content.size(), content) == 0;
       ++i) {
    end -= content.size();
  }
  return piece.substr(begin, end - begin);
}

}  // namespace

int ParseByteFallbackPiece(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
  const int hi = HexDigit(piece[3]);
  const int lo = HexDigit(piece[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

StatusOr<Decoder> Decoder::FromJson(const json& j) {
  std::vector<Step> steps;
  if (!j.is_null()) {
    KILN_RETURN_IF_ERROR(
        ForEachComponent(j, "decoder", "decoders", [&](const json& item, const std::string& type) {
          return AddFromJson(item, type, &steps);
        }));
  }
  return Decoder(std::move(steps));
}

Decoder Decoder::SentencePiece() {
  Step replace{Kind::kReplace};
  replace.pattern = "\xE2\x96\x81";
  replace.content = " ";
  Step strip{Kind::kStrip};
  strip.pattern = " ";
  strip.start = 1;
  return Decoder({replace, Step{Kind::kByteFallback}, Step{Kind::kFuse}, strip});
}

bool Decoder::has_byte_fallback() const {
  for (const Step& s : steps_) {
    if (s.kind == Kind::kByteFallback) return true;
  }
  return false;
}

Status Decoder::AddFromJson(const json& j, const std::string& type, std::vector<Step>* steps) {
  Step step;
  if (type == "ByteLevel") {
    step.kind = Kind::kByteLevel;
  } else if (type == "ByteFallback") {
    step.kind = Kind::kByteFallback;
  } else if (type == "Fuse") {
    step.kind = Kind::kFuse;
  } else if (type == "Replace") {
    step.kind = Kind::kReplace;
    const json& pattern = j.value("pattern", json());
    if (!pattern.is_object() || !pattern.contains("String") || !pattern["String"].is_string()) {
      return Status::Unimplemented(
          "decoder Replace: only {\"String\": ...} patterns are supported");
    }
    step.pattern = pattern["String"].get<std::string>();
    if (!j.contains("content") || !j["content"].is_string()) {
      return Status::InvalidArgument("decoder Replace: string 'content' expected");
    }
    step.content = j["content"].get<std::string>();
  } else if (type == "Strip") {
    step.kind = Kind::kStrip;
    step.pattern = j.value("content", std::string(" "));
    const json& start = j.value("start", json(0));
    const json& stop = j.value("stop", json(0));
    if (!start.is_number_unsigned() || !stop.is_number_unsigned() ||
        Utf8CharLen(step.pattern.empty() ? ' ' : step.pattern[0]) != step.pattern.size()) {
      return Status::InvalidArgument("decoder Strip: one-character 'content' and counts expected");
    }
    step.start = start.get<size_t>();
    step.stop = stop.get<size_t>();
  } else if (type == "Metaspace") {
    step.kind = Kind::kMetaspace;
    step.pattern = j.value("replacement", std::string("\xE2\x96\x81"));
    const std::string scheme = j.value("prepend_scheme", std::string());
    step.strip_first = scheme.empty() ? j.value("add_prefix_space", true) : scheme != "never";
  } else {
    return Status::Unimplemented("decoder type '" + type + "' is not supported");
  }
  steps->push_back(std::move(step));
  return Status::Ok();
}

std::string Decoder::Decode(std::vector<std::string> pieces) const {
  if (steps_.empty()) {
    std::string out;
    for (size_t i = 0; i < pieces.size(); ++i) {
      if (i > 0) out.push_back(' ');
      out += pieces[i];
    }
    return out;
  }
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Kind::kByteLevel: {
        std::string bytes;
        for (const std::string& p : pieces) AppendByteLevel(p, &bytes);
        pieces.assign(1, Utf8Lossy(bytes));
        break;
      }
      case Kind::kReplace:
        for (std::string& p : pieces) ReplaceAll(&p, step.pattern, step.content);
        break;
      case Kind::kByteFallback: {
        std::vector<std::string> out;
        out.reserve(pieces.size());
        std::string run;
        size_t run_pieces = 0;
        auto flush = [&] {
          if (run_pieces == 0) return;
          if (IsValidUtf8(run)) {
            out.push_back(run);
          } else {
            for (size_t i = 0; i < run_pieces; ++i) out.emplace_back(kReplacementChar);
          }
          run.clear();
          run_pieces = 0;
        };
        for (std::string& p : pieces) {
          const int byte = ParseByteFallbackPiece(p);
          if (byte >= 0) {
            run.push_back(static_cast<char>(byte));
            ++run_pieces;
          } else {
            flush();
            out.push_back(std::move(p));
          }
        }
        flush();
        pieces.swap(out);
        break;
      }
      case Kind::kFuse: {
        std::string fused;
        for (const std::string& p : pieces) fused += p;
        pieces.assign(1, std::move(fused));
        break;
      }
      case Kind::kStrip:
        for (std::string& p : pieces) p = StripPiece(p, step.pattern, step.start, step.stop);
        break;
      case Kind::kMetaspace:
        for (size_t i = 0; i < pieces.size(); ++i) {
          ReplaceAll(&pieces[i], step.pattern, i == 0 && step.strip_first ? "" : " ");
        }
        break;
    }
  }
  std::string out;
  for (const std::string& p : pieces) out += p;
  return out;
}

std::string Decoder::PieceBytes(std::string_view piece) const {
  std::string out(piece);
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Kind::kByteLevel: {
        std::string bytes;
        AppendByteLevel(out, &bytes);
        out.swap(bytes);
        break;
      }
      case Kind::kReplace:
        ReplaceAll(&out, step.pattern, step.content);
        break;
      case Kind::kByteFallback: {
        const int byte = ParseByteFallbackPiece(out);
        if (byte >= 0) out.assign(1, static_cast<char>(byte));
        break;
      }
      case Kind::kMetaspace:
        ReplaceAll(&out, step.pattern, " ");
        break;
      case Kind::kFuse:
      case Kind::kStrip:
        break;
    }
  }
  return out;
}

}  // namespace kiln::tokenizer
