// The schema corpus (tests/structured/schemas/*.json) with the real Qwen2.5 vocabulary: every
// schema compiles; random walks (uniform choice among allowed tokens = a temperature-1 model with
// flat logits, the hardest case) terminate and produce JSON that parses; at sampled steps the mask
// equals byte-level acceptance of every one of the 151k tokens; and the outputs validate against
// their schemas with an independent validator (tests/structured/validate.mjs: ajv + ajv-formats).
// Regex and choice constraints, and 300 random oneOf schemas (exact "exactly one" compiles, or
// refusals), are walked and validated the same way.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "structured/structured_output.h"
#include "structured/test_vocab.h"

namespace kiln::structured {
namespace {

constexpr int kWalksPerSchema = 3;
constexpr int kMaxTokens = 1500;

struct CorpusRun {
  bool have_vocab = false;
  std::string jsonl_path;
  int num_outputs = 0;
};

GrammarCompiler* QwenCompiler() {
  static std::unique_ptr<GrammarCompiler> compiler = [] {
    VocabInfo v;
    if (!testing::LoadQwenVocab(testing::QwenTokenizerPath(), &v)) {
      return std::unique_ptr<GrammarCompiler>();
    }
    auto c = GrammarCompiler::Create(v);
    return c.ok() ? std::move(c).value() : std::unique_ptr<GrammarCompiler>();
  }();
  return compiler.get();
}

// Brute-force check of one mask against byte-level acceptance of every token.
void ExpectMaskExact(GrammarMatcher* m, const std::string& where) {
  const VocabIndex& v = m->grammar().vocab();
  std::vector<uint32_t> mask(m->num_mask_words());
  m->FillNextTokenBitmask(mask.data());
  int mismatches = 0;
  for (int32_t id = 0; id < v.vocab_size() && mismatches < 5; ++id) {
    bool bit = mask[id >> 5] >> (id & 31) & 1;
    bool expect = v.is_eos(id) ? m->CanTerminate()
                               : !v.token_bytes(id).empty() && m->WouldAccept(v.token_bytes(id));
    if (bit != expect) {
      ++mismatches;
      ADD_FAILURE() << where << ": token " << id << " '" << v.token_bytes(id) << "' mask " << bit
                    << " but byte-level " << expect;
    }
  }
}

void WriteRecord(std::ofstream& out, const std::string& name, const nlohmann::json& constraint,
                 const std::string& output) {
  nlohmann::json rec = constraint;
  rec["name"] = name;
  rec["output"] = output;
  out << rec.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
}

// A random bounded schema for one oneOf branch: numbers with ranges, strings with lengths,
// enums/consts over a small pool, booleans, null, arrays with sizes, and small objects (keys from
// a, b, c; required subsets; additionalProperties absent / false / a schema) — the shapes whose
// exclusivity the prover reasons about, so overlapping and exclusive pairs both come up.
nlohmann::json RandomBranch(std::mt19937* rng, int depth) {
  using nlohmann::json;
  auto pick = [&](int n) { return static_cast<int>((*rng)() % static_cast<uint32_t>(n)); };
  const json pool = json::array({"a", "b", "c", 1, 2, 2.5, true, false, nullptr});
  switch (pick(depth > 0 ? 8 : 9)) {
    case 0: {
      const int lo = pick(20) - 10;
      return {{"type", "integer"}, {"minimum", lo}, {"maximum", lo + pick(15)}};
    }
    case 1: {
      const int lo = pick(20) - 10;
      json j = {{"type", "number"}, {"minimum", lo}};
      j[pick(2) ? "maximum" : "exclusiveMaximum"] = lo + 1 + pick(10);
      return j;
    }
    case 2: {
      const int lo = pick(4);
      return {{"type", "string"}, {"minLength", lo}, {"maxLength", lo + pick(4)}};
    }
    case 3: {
      json e = json::array();
      for (int i = 0, n = 1 + pick(3); i < n; ++i) e.push_back(pool[pick(9)]);
      return {{"enum", e}};
    }
    case 4:
      return {{"const", pool[pick(9)]}};
    case 5:
      return {{"type", pick(2) ? "boolean" : "null"}};
    case 6: {
      const int lo = pick(3);
      return {{"type", "array"},
              {"items", {{"type", "integer"}, {"minimum", 0}, {"maximum", 9}}},
              {"minItems", lo},
              {"maxItems", lo + pick(3)}};
    }
    case 7:
      return {{"type", "string"}, {"enum", json::array({"x", "y"})}};
    default: {
      json props = json::object(), required = json::array();
      for (const char* k : {"a", "b", "c"}) {
        if (pick(2)) continue;
        props[k] = RandomBranch(rng, depth + 1);
        if (pick(2)) required.push_back(k);
      }
      json j = {{"type", "object"}, {"properties", props}, {"required", required}};
      const int extra = pick(4);
      if (extra == 1) j["additionalProperties"] = false;
      if (extra == 2)
        j["additionalProperties"] = {{"type", "integer"}, {"minimum", 0}, {"maximum", 9}};
      return j;
    }
  }
}

// Random oneOf schemas (2-3 branches): each either compiles, and then its random walks must be
// valid under ajv (which checks "exactly one branch"), or is refused naming oneOf.
void WalkRandomOneOfs(GrammarCompiler* compiler, std::ofstream& out, std::mt19937* rng,
                      int* num_outputs) {
  constexpr int kSchemas = 300;
  // The schemas come from a generator of their own: the same 300 whatever the corpus walks drew.
  std::mt19937 schema_rng(20261125);
  int compiled = 0, refused = 0;
  for (int i = 0; i < kSchemas; ++i) {
    nlohmann::json branches = nlohmann::json::array();
    for (int b = 0, n = 2 + static_cast<int>(schema_rng() % 2); b < n; ++b) {
      branches.push_back(RandomBranch(&schema_rng, 0));
    }
    const nlohmann::json schema = {{"oneOf", branches}};
    ResponseFormat f;
    f.type = ResponseFormat::Type::kJsonSchema;
    f.json_schema = schema.dump();
    auto g = compiler->Compile(f);
    if (!g.ok()) {
      const std::string& msg = g.status().message();
      // Refused as overlapping, or every branch unsatisfiable; nothing else is expected here.
      EXPECT_TRUE(msg.find("oneOf") != std::string::npos ||
                  msg.find("empty language") != std::string::npos)
          << schema.dump() << ": " << msg;
      ++refused;
      continue;
    }
    ++compiled;
    for (int w = 0; w < kWalksPerSchema; ++w) {
      GrammarMatcher m(*g);
      testing::WalkResult res = testing::RandomWalk(&m, rng, 400);
      EXPECT_FALSE(res.stuck) << schema.dump() << ": empty mask after " << res.output;
      if (!res.terminated) continue;  // an unbounded extra key, cut
      WriteRecord(out, "random_oneof_" + std::to_string(i) + "#" + std::to_string(w),
                  {{"schema", schema}}, res.output);
      ++*num_outputs;
    }
  }
  std::printf("random oneOf schemas: %d compiled (outputs validated below), %d refused\n", compiled,
              refused);
  EXPECT_GE(compiled, kSchemas / 5);
  EXPECT_GE(refused, kSchemas / 5);
}

const CorpusRun& RunCorpus() {
  static CorpusRun run = [] {
    CorpusRun r;
    GrammarCompiler* compiler = QwenCompiler();
    if (compiler == nullptr) return r;
    r.have_vocab = true;
    const std::string dir = testing::SourceDir() + "/tests/structured/schemas";
    auto corpus = testing::LoadCorpus(dir);
    EXPECT_GE(corpus.size(), 50u) << "corpus at " << dir;
    const char* build = std::getenv("KILN_BUILD_DIR");
    r.jsonl_path = std::string(build ? build : ".") + "/structured_corpus_outputs.jsonl";
    std::ofstream out(r.jsonl_path, std::ios::binary | std::ios::trunc);
    std::mt19937 rng(20261125);
    int terminated = 0, walks = 0;
    for (size_t i = 0; i < corpus.size(); ++i) {
      const auto& cs = corpus[i];
      ResponseFormat f;
      f.type = ResponseFormat::Type::kJsonSchema;
      f.json_schema = cs.text;
      auto g = compiler->Compile(f);
      EXPECT_TRUE(g.ok()) << cs.name << ": " << g.status().ToString();
      if (!g.ok()) continue;
      nlohmann::json schema = nlohmann::json::parse(cs.text, nullptr, false);
      std::printf("%-28s compile %8.1f ms, %5d states:", cs.name.c_str(), (*g)->stats().compile_ms,
                  (*g)->stats().num_states);
      for (int w = 0; w < kWalksPerSchema; ++w) {
        GrammarMatcher m(*g);
        if (w == 0) {
          // Exactness at the start and after a few tokens.
          ExpectMaskExact(&m, cs.name + " step 0");
        }
        testing::WalkResult res = testing::RandomWalk(&m, &rng, w == 0 ? 7 : kMaxTokens);
        if (w == 0) {
          if (!m.IsTerminated()) ExpectMaskExact(&m, cs.name + " step 7");
          testing::WalkResult rest = testing::RandomWalk(&m, &rng, kMaxTokens);
          res.output += rest.output;
          res.terminated = rest.terminated || res.terminated;
        }
        ++walks;
        EXPECT_FALSE(res.stuck) << cs.name << ": empty mask before completion after " << res.output;
        std::printf(" %d%s", static_cast<int>(res.output.size()), res.terminated ? "" : "(cut)");
        if (!res.terminated) continue;  // cut by max_tokens
        ++terminated;
        nlohmann::json parsed = nlohmann::json::parse(res.output, nullptr, false);
        EXPECT_FALSE(parsed.is_discarded()) << cs.name << " produced non-JSON: " << res.output;
        WriteRecord(out, cs.name + "#" + std::to_string(w), {{"schema", schema}}, res.output);
        ++r.num_outputs;
      }
      std::printf("\n");
      std::fflush(stdout);
    }
    WalkRandomOneOfs(compiler, out, &rng, &r.num_outputs);
    // Regex and choice constraints.
    struct Re {
      const char* name;
      const char* regex;
    };
    for (const Re& re : {Re{"regex_phone", "\\(\\d{3}\\) \\d{3}-\\d{4}"},
                         Re{"regex_words", "[A-Z][a-z]{1,8}( [a-z]{1,8}){0,5}\\."},
                         Re{"regex_alt", "(yes|no|maybe)(, (yes|no|maybe))*"},
                         Re{"regex_hex", "0x[0-9a-fA-F]{1,8}"}}) {
      ResponseFormat f;
      f.type = ResponseFormat::Type::kRegex;
      f.regex = re.regex;
      auto g = compiler->Compile(f);
      EXPECT_TRUE(g.ok()) << re.name << ": " << g.status().ToString();
      if (!g.ok()) continue;
      for (int w = 0; w < kWalksPerSchema; ++w) {
        GrammarMatcher m(*g);
        auto res = testing::RandomWalk(&m, &rng, kMaxTokens);
        ++walks;
        if (!res.terminated) continue;
        ++terminated;
        WriteRecord(out, re.name, {{"regex", re.regex}}, res.output);
        ++r.num_outputs;
      }
    }
    {
      ResponseFormat f;
      f.type = ResponseFormat::Type::kChoice;
      f.choices = {"positive", "negative", "neutral", "mixed feelings"};
      auto g = compiler->Compile(f);
      EXPECT_TRUE(g.ok());
      for (int w = 0; g.ok() && w < 5; ++w) {
        GrammarMatcher m(*g);
        auto res = testing::RandomWalk(&m, &rng, kMaxTokens);
        ++walks;
        EXPECT_TRUE(res.terminated);
        ++terminated;
        WriteRecord(out, "choice", {{"choices", f.choices}}, res.output);
        ++r.num_outputs;
      }
    }
    std::printf("corpus: %zu schemas, %d walks, %d terminated within %d tokens, %d outputs in %s\n",
                corpus.size(), walks, terminated, kMaxTokens, r.num_outputs, r.jsonl_path.c_str());
    EXPECT_GE(terminated * 10, walks * 8) << "too few walks reached termination";
    return r;
  }();
  return run;
}

// The held-out set (tests/structured/heldout: schemas written as API payloads, forms, configs and
// extraction targets, not used to develop the compiler): at least 95% compile; the rest are
// refused with InvalidArgument naming the keyword; compiled ones are walked like the corpus and
// their outputs validated by ajv.
struct HeldOutRun {
  int num_schemas = 0, num_compiled = 0, num_outputs = 0;
  std::string jsonl_path;
};

const HeldOutRun& RunHeldOut() {
  static HeldOutRun run = [] {
    HeldOutRun r;
    GrammarCompiler* compiler = QwenCompiler();
    if (compiler == nullptr) return r;
    auto schemas = testing::LoadCorpus(testing::SourceDir() + "/tests/structured/heldout");
    const char* build = std::getenv("KILN_BUILD_DIR");
    r.jsonl_path = std::string(build ? build : ".") + "/structured_heldout_outputs.jsonl";
    std::ofstream out(r.jsonl_path, std::ios::binary | std::ios::trunc);
    std::mt19937 rng(20261207);
    for (const auto& cs : schemas) {
      ++r.num_schemas;
      ResponseFormat f;
      f.type = ResponseFormat::Type::kJsonSchema;
      f.json_schema = cs.text;
      auto g = compiler->Compile(f);
      if (!g.ok()) {
        EXPECT_EQ(g.status().code(), StatusCode::kInvalidArgument) << cs.name;
        EXPECT_NE(g.status().message().find("unsupported keyword '"), std::string::npos)
            << cs.name << ": " << g.status().message();
        std::printf("%-30s refused: %s\n", cs.name.c_str(), g.status().message().c_str());
        continue;
      }
      ++r.num_compiled;
      const nlohmann::json schema = nlohmann::json::parse(cs.text, nullptr, false);
      for (int w = 0; w < kWalksPerSchema; ++w) {
        GrammarMatcher m(*g);
        if (w == 0) ExpectMaskExact(&m, cs.name + " step 0");
        testing::WalkResult res = testing::RandomWalk(&m, &rng, kMaxTokens);
        EXPECT_FALSE(res.stuck) << cs.name << ": empty mask before completion after " << res.output;
        if (!res.terminated) continue;
        EXPECT_FALSE(nlohmann::json::parse(res.output, nullptr, false).is_discarded())
            << cs.name << " produced non-JSON: " << res.output;
        WriteRecord(out, cs.name + "#" + std::to_string(w), {{"schema", schema}}, res.output);
        ++r.num_outputs;
      }
    }
    std::printf("held-out: %d of %d schemas compile, %d outputs in %s\n", r.num_compiled,
                r.num_schemas, r.num_outputs, r.jsonl_path.c_str());
    return r;
  }();
  return run;
}

// Runs tests/structured/validate.mjs (ajv) on a JSONL of outputs; skips without node or ajv.
void ValidateWithAjv(const std::string& jsonl_path) {
  const std::string src = testing::SourceDir();
  if (std::system("node --version > /dev/null 2>&1") != 0) GTEST_SKIP() << "node not found";
  if (!std::filesystem::exists(src + "/node_modules/ajv") ||
      !std::filesystem::exists(src + "/node_modules/ajv-formats")) {
    GTEST_SKIP() << "node_modules/ajv or ajv-formats missing (run npm install in " << src << ")";
  }
  std::string cmd = "node " + src + "/tests/structured/validate.mjs " + jsonl_path + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string text;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof(buf), p)) text.append(buf, n);
  int rc = pclose(p);
  std::printf("%s", text.c_str());
  EXPECT_EQ(rc, 0) << text;
}

TEST(StructuredHeldOutTest, AtLeast95PercentCompileAndOutputsValidateWithAjv) {
  if (QwenCompiler() == nullptr) GTEST_SKIP() << "missing " << testing::QwenTokenizerPath();
  const HeldOutRun& r = RunHeldOut();
  ASSERT_GE(r.num_schemas, 60);
  EXPECT_GE(r.num_compiled * 100, r.num_schemas * 95);
  EXPECT_GE(r.num_outputs, r.num_compiled * 2);  // most walks terminate
  ValidateWithAjv(r.jsonl_path);
}

TEST(StructuredCorpusTest, RandomWalksTerminateAndParse) {
  const CorpusRun& r = RunCorpus();
  if (!r.have_vocab) GTEST_SKIP() << "missing " << testing::QwenTokenizerPath();
  EXPECT_GT(r.num_outputs, 150);
}

TEST(StructuredCorpusTest, OutputsValidateWithAjv) {
  const CorpusRun& r = RunCorpus();
  if (!r.have_vocab) GTEST_SKIP() << "missing " << testing::QwenTokenizerPath();
  ValidateWithAjv(r.jsonl_path);
}

}  // namespace
}  // namespace kiln::structured
