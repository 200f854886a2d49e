// Test/bench helper (not part of kiln_structured): the Qwen2.5 vocabulary as VocabInfo, decoded
// directly from tokenizer.json (byte-level BPE: GPT-2 byte↔unicode mapping) so tests do not depend
// on the tokenizer library; and a tiny hand-made vocabulary for unit tests.
#pragma once

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

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

inline std::string QwenTokenizerPath() {
  return SharedDir() + "/tokenizers/qwen2.5/tokenizer.json";
}

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
      for (int k = 1; k < len; ++k)
        cp = (cp << 6) | (static_cast<unsigned char>(tok[i + k]) & 0x3F);
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

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <random>

#include "structured/structured_output.h"

namespace kiln::structured::testing {

// A compiler over TinyVocab plus a few multi-byte JSON tokens, shared by the schema unit tests.
inline GrammarCompiler& TinyJsonCompiler() {
  static std::unique_ptr<GrammarCompiler> c =
      std::move(GrammarCompiler::Create(TinyVocab({"\":", "{\"", "\",", "12"})).value());
  return *c;
}

// `s` is a complete output of `g`.
inline bool CompleteOutput(const std::shared_ptr<const CompiledGrammar>& g, const std::string& s) {
  GrammarMatcher m(g);
  return m.AcceptBytes(s) && m.CanTerminate();
}

struct CorpusSchema {
  std::string name;  // file stem
  std::string text;  // the schema JSON
};

// tests/structured/schemas/*.json, sorted by name.
inline std::vector<CorpusSchema> LoadCorpus(const std::string& dir) {
  std::vector<CorpusSchema> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.path().extension() != ".json") continue;
    std::ifstream in(e.path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    out.push_back({e.path().stem().string(), ss.str()});
  }
  std::sort(out.begin(), out.end(),
            [](const CorpusSchema& a, const CorpusSchema& b) { return a.name < b.name; });
  return out;
}

// The p-quantile (0..1, nearest rank) of `v`; 0 for an empty vector.
inline double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * (v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

struct WalkResult {
  std::string output;
  int num_tokens = 0;
  bool stuck = false;       // no token allowed before termination (must never happen)
  bool terminated = false;  // the matcher reached a state where only EOS (or nothing) may follow,
                            // or EOS was sampled
  std::vector<double> mask_us;      // FillNextTokenBitmask wall time per step
  std::vector<double> mask_cpu_us;  // ... and this thread's CPU time (immune to preemption)
};

// Samples uniformly among the allowed tokens at every step (a temperature-1 model with flat
// logits) until the matcher terminates, EOS is drawn, or max_tokens.
inline WalkResult RandomWalk(GrammarMatcher* m, std::mt19937* rng, int max_tokens) {
  WalkResult r;
  const VocabIndex& v = m->grammar().vocab();
  std::vector<uint32_t> mask(m->num_mask_words());
  std::vector<int32_t> allowed;
  while (r.num_tokens < max_tokens && !m->IsTerminated()) {
    timespec c0, c1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    auto t0 = std::chrono::steady_clock::now();
    m->FillNextTokenBitmask(mask.data());
    r.mask_us.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    r.mask_cpu_us.push_back((c1.tv_sec - c0.tv_sec) * 1e6 + (c1.tv_nsec - c0.tv_nsec) / 1e3);
    allowed.clear();
    for (int w = 0; w < static_cast<int>(mask.size()); ++w) {
      for (uint32_t bits = mask[w]; bits != 0; bits &= bits - 1) {
        allowed.push_back(w * 32 + __builtin_ctz(bits));
      }
    }
    if (allowed.empty()) {
      r.stuck = true;
      break;
    }
    int32_t id = allowed[(*rng)() % allowed.size()];
    if (!m->AcceptToken(id)) break;
    ++r.num_tokens;
    if (v.is_eos(id)) break;
    r.output += v.token_bytes(id);
  }
  r.terminated = m->IsTerminated();
  return r;
}

}  // namespace kiln::structured::testing
