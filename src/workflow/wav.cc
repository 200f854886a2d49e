#include "workflow/wav.h"

#include <cstring>

namespace kiln::workflow {
namespace {

void Put32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void Put16(std::string* out, uint16_t v) {
  out->push_back(static_cast<char>(v & 0xff));
  out->push_back(static_cast<char>(v >> 8));
}
uint32_t Get32(const std::string& s, size_t at) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i)
    v = (v << 8) | static_cast<unsigned char>(s[at + static_cast<size_t>(i)]);
  return v;
}
uint16_t Get16(const std::string& s, size_t at) {
  return static_cast<uint16_t>(static_cast<unsigned char>(s[at]) |
                               (static_cast<unsigned char>(s[at + 1]) << 8));
}

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

}  // namespace

std::string WriteWav(const std::vector<int16_t>& samples, int sample_rate) {
  const uint32_t data_bytes = static_cast<uint32_t>(samples.size() * 2);
  std::string out;
  out.reserve(44 + data_bytes);
  out += "RIFF";
  Put32(&out, 36 + data_bytes);
  out += "WAVEfmt ";
  Put32(&out, 16);
  Put16(&out, 1);  // PCM
  Put16(&out, 1);  // mono
  Put32(&out, static_cast<uint32_t>(sample_rate));
  Put32(&out, static_cast<uint32_t>(sample_rate) * 2);
  Put16(&out, 2);
  Put16(&out, 16);
  out += "data";
  Put32(&out, data_bytes);
  for (int16_t s : samples) Put16(&out, static_cast<uint16_t>(s));
  return out;
}

StatusOr<WavInfo> ReadWavInfo(const std::string& b) {
  if (b.size() < 12 || b.compare(0, 4, "RIFF") != 0 || b.compare(8, 4, "WAVE") != 0) {
    return Status::DataLoss("not a RIFF/WAVE file");
  }
  WavInfo info;
  bool have_fmt = false;
  size_t pos = 12;
  while (pos + 8 <= b.size()) {
    const std::string id = b.substr(pos, 4);
    const uint32_t size = Get32(b, pos + 4);
    const size_t body = pos + 8;
    if (id == "fmt ") {
      if (size < 16 || body + 16 > b.size()) return Status::DataLoss("truncated fmt chunk");
      if (Get16(b, body) != 1) return Status::DataLoss("not PCM");
      info.num_channels = Get16(b, body + 2);
      info.sample_rate = static_cast<int>(Get32(b, body + 4));
      info.bits_per_sample = Get16(b, body + 14);
      have_fmt = true;
    } else if (id == "data") {
      if (!have_fmt) return Status::DataLoss("data chunk before fmt chunk");
      if (info.num_channels <= 0 || info.bits_per_sample <= 0 || info.sample_rate <= 0) {
        return Status::DataLoss("invalid fmt chunk");
      }
      const uint64_t available = std::min<uint64_t>(size, b.size() - body);
      info.num_frames = static_cast<int64_t>(
          available / (static_cast<uint64_t>(info.num_channels) * (info.bits_per_sample / 8)));
      info.duration_s = static_cast<double>(info.num_frames) / info.sample_rate;
      return info;
    }
    pos = body + size + (size & 1);
  }
  return Status::DataLoss("no data chunk");
}

std::string Base64Encode(const std::string& bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t n = static_cast<unsigned char>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) n |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    if (i + 2 < bytes.size()) n |= static_cast<unsigned char>(bytes[i + 2]);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(n >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? kAlphabet[n & 63] : '=';
  }
  return out;
}

StatusOr<std::string> Base64Decode(const std::string& text) {
  int8_t table[256];
  std::memset(table, -1, sizeof(table));
  for (int i = 0; i < 64; ++i)
    table[static_cast<unsigned char>(kAlphabet[i])] = static_cast<int8_t>(i);
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    if (c == '=' || c == '\n' || c == '\r') continue;
    const int8_t v = table[static_cast<unsigned char>(c)];
    if (v < 0) return Status::InvalidArgument("invalid base64 character");
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

}  // namespace kiln::workflow
