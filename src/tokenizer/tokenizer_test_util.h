// Test helpers for the tokenizer tests: where the shared reference data and this directory's
// testdata live, file reading, and a streaming-decode helper.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "kiln/tokenizer.h"

namespace kiln::tokenizer::testing {

inline std::filesystem::path SharedDir() {
  if (const char* env = std::getenv("KILN_SHARED")) return env;
  if (const char* src = std::getenv("KILN_SOURCE_DIR"))
    return std::filesystem::path(src) / ".." / "shared";
  return "../shared";
}

inline std::filesystem::path TestDataDir() {
  const char* src = std::getenv("KILN_SOURCE_DIR");
  return std::filesystem::path(src != nullptr ? src : ".") / "src" / "tokenizer" / "testdata";
}

inline std::string ReadText(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

inline nlohmann::json ReadJsonFile(const std::filesystem::path& path) {
  return nlohmann::json::parse(ReadText(path), nullptr, false);
}

// Concatenation of what a streaming detokenizer emits for `ids`, plus its Flush().
inline std::string StreamDecode(const Tokenizer& tokenizer, const std::vector<int32_t>& ids,
                                bool skip_special_tokens) {
  auto stream = tokenizer.NewDetokenizer(skip_special_tokens);
  std::string text;
  for (int32_t id : ids) text += stream->Push(id);
  text += stream->Flush();
  return text;
}

}  // namespace kiln::tokenizer::testing
