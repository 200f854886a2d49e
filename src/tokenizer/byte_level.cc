#include "tokenizer/byte_level.h"

#include <array>

#include "tokenizer/utf8.h"

namespace kiln::tokenizer {
namespace {

struct Tables {
  std::array<char32_t, 256> byte_to_cp{};
  std::array<std::string, 256> byte_to_utf8;
  std::array<int16_t, 512> cp_to_byte{};  // every mapped code point is below 0x144

  Tables() {
    cp_to_byte.fill(-1);
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      byte_to_cp[b] = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + next++);
    }
    for (int b = 0; b < 256; ++b) {
      AppendUtf8(byte_to_cp[b], &byte_to_utf8[b]);
      cp_to_byte[byte_to_cp[b]] = static_cast<int16_t>(b);
    }
  }
};

const Tables& GetTables() {
  static const Tables tables;
  return tables;
}

}  // namespace

std::string_view ByteToUnicodeChar(uint8_t byte) { return GetTables().byte_to_utf8[byte]; }

int UnicodeCharToByte(char32_t cp) {
  const Tables& t = GetTables();
  return cp < t.cp_to_byte.size() ? t.cp_to_byte[cp] : -1;
}

bool ByteLevelToBytes(std::string_view text, std::string* out) {
  out->clear();
  size_t i = 0;
  while (i < text.size()) {
    char32_t cp = 0;
    const size_t n = DecodeUtf8(text, i, &cp);
    if (n == 0) return false;
    const int b = UnicodeCharToByte(cp);
    if (b < 0) return false;
    out->push_back(static_cast<char>(b));
    i += n;
  }
  return true;
}

std::string BytesToByteLevel(std::string_view bytes) {
  std::string out;
  for (char c : bytes) out.append(ByteToUnicodeChar(static_cast<uint8_t>(c)));
  return out;
}

}  // namespace kiln::tokenizer
