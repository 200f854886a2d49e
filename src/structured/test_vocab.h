// Test/bench helper (not part of kiln_structured): the Qwen2.5 vocabulary as VocabInfo, decoded
// directly from tokenizer.json (byte-level BPE: GPT-2 byte↔unicode mapping) so tests do not depend
// on the tokenizer library; and a tiny hand-made vocabulary for unit tests.
#pragma once

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "structured/vocab_index.h"

namespace kiln::structured::testing {

inline std::string SharedDir() {
  if (const char* s = std::getenv("KILN_SHARED")) return s;
  if (const char* src = std::getenv("KILN_SOURCE_DIR")) return std::string(src) + "/../shared";
  return "../shared";
}

inline std::string SourceDir() {
  if (const char* src = std::getenv("KILN_SOURCE_DIR")) return src;
  return ".";
}

inline std::string QwenTokenizerPath() { return SharedDir() + "/tokenizers/qwen2.5/tokenizer.json"; }

// Returns false when the file is missing or malformed.
inline bool LoadQwenVocab(const std::string& path, VocabInfo* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json tj = nlohmann::json::parse(ss.str(), nullptr, false);
  if (tj.is_discarded() || !tj.contains("model")) return false;
  // GPT-2 bytes_to_unicode, inverted: code point → byte.
  std::vector<int> cp_to_byte(512, -1);
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    if (printable) {
      cp_to_byte[b] = b;
    } else {
      cp_to_byte[256 + n] = b;
      ++n;
    }
  }
  int max_id = -1;
  for (auto& [tok, id] : tj["model"]["vocab"].items()) max_id = std::max(max_id, id.get<int>());
  for (const auto& a : tj["added_tokens"]) max_id = std::max(max_id, a["id"].get<int>());
  out->token_bytes.assign(max_id + 1, "");
  out->vocab_size = max_id + 1;
  for (auto& [tok, id] : tj["model"]["vocab"].items()) {
    std::string bytes;
    for (size_t i = 0; i < tok.size();) {
      unsigned char c = tok[i];
      uint32_t cp;
      int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : 4;
      cp = len == 1 ? c : (c & (0x7F >> len));
      for (int k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(tok[i + k]) & 0x3F);
      i += len;
      if (cp >= cp_to_byte.size() || cp_to_byte[cp] < 0) return false;
      bytes.push_back(static_cast<char>(cp_to_byte[cp]));
    }
    out->token_bytes[id.get<int>()] = bytes;
  }
  out->eos_token_ids.clear();
  for (const auto& a : tj["added_tokens"]) {
    std::string content = a["content"].get<std::string>();
    if (content == "<|endoftext|>" || content == "<|im_end|>") {
      out->eos_token_ids.push_back(a["id"].get<int>());
    }
  }
  return true;
}

// Every single byte as a token (ids 0..255), some multi-byte tokens after them, EOS last.
inline VocabInfo TinyVocab(const std::vector<std::string>& extra = {}) {
  VocabInfo v;
  for (int b = 0; b < 256; ++b) v.token_bytes.push_back(std::string(1, static_cast<char>(b)));
  for (const auto& e : extra) v.token_bytes.push_back(e);
  v.token_bytes.push_back("");  // special token
  v.eos_token_ids = {static_cast<int32_t>(v.token_bytes.size())};
  v.token_bytes.push_back("");  // EOS
  v.vocab_size = static_cast<int>(v.token_bytes.size());
  return v;
}

}  // namespace kiln::structured::testing
