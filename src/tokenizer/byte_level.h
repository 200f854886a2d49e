// The GPT-2 byte-level alphabet: every byte 0..255 is written as one printable Unicode character
// (printable Latin-1 bytes as themselves, the others as U+0100 + n), so that byte-level BPE
// vocabularies (GPT-2, Llama-3, Qwen) are stored as text. kiln converts those vocabularies back to
// raw bytes at load time and runs BPE on raw bytes, so this table is used only at load and decode.
//
// Thread-safety: immutable tables, built at first use.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace kiln::tokenizer {

// The UTF-8 of the character that stands for `byte`.
std::string_view ByteToUnicodeChar(uint8_t byte);

// The byte a character stands for, or -1 when the character is not in the alphabet.
int UnicodeCharToByte(char32_t cp);

// Converts a byte-level string (e.g. "Ġhello") to the raw bytes it stands for (" hello").
// Returns false (and leaves *out unspecified) when a character is not in the alphabet.
bool ByteLevelToBytes(std::string_view text, std::string* out);

// Raw bytes → byte-level text.
std::string BytesToByteLevel(std::string_view bytes);

}  // namespace kiln::tokenizer
