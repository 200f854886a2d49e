// kiln_tokenizer_parity: compares kiln's tokenizer with HF tokenizers' outputs written by
// bench/tokenizer_hf_parity.js (a differential fuzz): ids with add_special_tokens, decode with and
// without skipping special tokens, and streaming decode.
//
//   kiln_tokenizer_parity TOKENIZER_DIR_OR_JSON HF_CASES.json
//
// Prints the first mismatches and a count; exit status 1 when any case differs.
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tokenizer/tokenizer_factory.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s TOKENIZER_DIR_OR_JSON HF_CASES.json\n", argv[0]);
    return 2;
  }
  std::ifstream in(argv[2], std::ios::binary);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  const nlohmann::json cases = nlohmann::json::parse(buffer.str(), nullptr, false);
  if (cases.is_discarded() || !cases.is_array()) {
    std::fprintf(stderr, "%s: a JSON array of cases expected\n", argv[2]);
    return 2;
  }
  auto loaded = kiln::CreateTokenizerFromJson(argv[1]);
  if (!loaded.ok()) {
    std::fprintf(stderr, "%s\n", loaded.status().ToString().c_str());
    return 2;
  }
  const kiln::Tokenizer& tok = **loaded;
  int mismatches = 0;
  for (const nlohmann::json& c : cases) {
    const std::string text = c.value("text", std::string());
    const std::vector<int32_t> expected = c.value("ids", std::vector<int32_t>());
    const std::vector<int32_t> ids = tok.Encode(text, true);
    std::string what;
    if (ids != expected) {
      what = "ids";
    } else if (*tok.Decode(ids, false) != c.value("decoded", std::string())) {
      what = "decode";
    } else if (*tok.Decode(ids, true) != c.value("decoded_skip", std::string())) {
      what = "decode(skip_special_tokens)";
    } else {
      auto stream = tok.NewDetokenizer(false);
      std::string streamed;
      for (int32_t id : ids) streamed += stream->Push(id);
      streamed += stream->Flush();
      if (streamed != c.value("decoded", std::string())) what = "streaming decode";
    }
    if (!what.empty() && ++mismatches <= 5) {
      std::printf("MISMATCH (%s) on %s\n", what.c_str(), nlohmann::json(text).dump().c_str());
    }
  }
  std::printf("%s: %d of %zu cases differ from HF tokenizers\n", argv[1], mismatches, cases.size());
  return mismatches == 0 ? 0 : 1;
}
