// Structured-output benchmark: compile time and per-token mask time (FillNextTokenBitmask) over
// the schema corpus with the Qwen2.5 vocabulary (151,665 tokens), on random walks (uniform choice
// among allowed tokens). Prints p50/p99/max against the goals (mask p50 <= 50 us, p99 <= 500 us).
//
// Token tables are computed lazily (structured_output.h), so by default the first walks of a
// schema include computing the tables they reach; --warm 1 computes every table after the compile
// and before the walks (steady state: the figures of a schema seen before).
//
// Usage: structured_mask_bench [--walks N] [--max-tokens N] [--schema NAME_SUBSTRING] [--warm 0|1]
//                              [--eager-ms MS] (GrammarCompilerOptions::eager_table_budget_ms)
// Reads KILN_SHARED (default ../shared) and KILN_SOURCE_DIR (default .).
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "structured/structured_output.h"
#include "structured/test_vocab.h"

using namespace kiln::structured;
using kiln::ResponseFormat;

int main(int argc, char** argv) {
  int walks = 3, max_tokens = 1000;
  bool warm = false;
  double eager_ms = GrammarCompilerOptions{}.eager_table_budget_ms;
  std::string filter;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--walks")) walks = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--max-tokens")) max_tokens = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--schema")) filter = argv[i + 1];
    if (!std::strcmp(argv[i], "--warm")) warm = std::atoi(argv[i + 1]) != 0;
    if (!std::strcmp(argv[i], "--eager-ms")) eager_ms = std::atof(argv[i + 1]);
  }
  VocabInfo vocab;
  if (!testing::LoadQwenVocab(testing::QwenTokenizerPath(), &vocab)) {
    std::fprintf(stderr, "missing %s\n", testing::QwenTokenizerPath().c_str());
    return 1;
  }
  auto t0 = std::chrono::steady_clock::now();
  GrammarCompilerOptions options;
  options.eager_table_budget_ms = eager_ms;
  auto compiler_or = GrammarCompiler::Create(vocab, options);
  if (!compiler_or.ok()) {
    std::fprintf(stderr, "%s\n", compiler_or.status().ToString().c_str());
    return 1;
  }
  auto compiler = std::move(compiler_or).value();
  double index_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  auto corpus = testing::LoadCorpus(testing::SourceDir() + "/tests/structured/schemas");
  std::printf("vocabulary: %d tokens, %zu-node trie, index built in %.0f ms\n",
              compiler->vocab().vocab_size(), compiler->vocab().trie().nodes().size(), index_ms);
  std::vector<double> compile_ms, mask_us, mask_cpu_us, first_mask_us;
  std::mt19937 rng(1);
  int num_schemas = 0;
  for (const auto& cs : corpus) {
    if (!filter.empty() && cs.name.find(filter) == std::string::npos) continue;
    ResponseFormat f;
    f.type = ResponseFormat::Type::kJsonSchema;
    f.json_schema = cs.text;
    auto g = compiler->Compile(f);
    if (!g.ok()) {
      std::printf("%s: %s\n", cs.name.c_str(), g.status().ToString().c_str());
      continue;
    }
    ++num_schemas;
    if (warm) {
      for (int32_t s = 0; s < (*g)->automaton().num_states; ++s) (*g)->entry(s);
    }
    const GrammarStats& st = (*g)->stats();
    compile_ms.push_back(st.compile_ms);
    std::vector<double> local;
    for (int w = 0; w < walks; ++w) {
      GrammarMatcher m(*g);
      auto r = testing::RandomWalk(&m, &rng, max_tokens);
      local.insert(local.end(), r.mask_us.begin(), r.mask_us.end());
      mask_cpu_us.insert(mask_cpu_us.end(), r.mask_cpu_us.begin(), r.mask_cpu_us.end());
      if (!r.mask_us.empty()) first_mask_us.push_back(r.mask_us[0]);
    }
    mask_us.insert(mask_us.end(), local.begin(), local.end());
    std::printf(
        "%-28s compile %8.1f ms (%5d states, %4d tables computed, %6.1f MB)  mask p50 %6.1f "
        "p99 %7.1f max %7.1f us over %zu steps\n",
        cs.name.c_str(), st.compile_ms, st.num_states, st.num_entries_computed,
        st.entry_bytes / 1e6, testing::Percentile(local, 0.5), testing::Percentile(local, 0.99),
        testing::Percentile(local, 1.0), local.size());
  }
  std::printf("\n%d schemas, %d walks each (max %d tokens), %zu mask computations, %s\n",
              num_schemas, walks, max_tokens, mask_us.size(),
              warm ? "every token table computed before the walks (--warm 1)"
                   : "token tables computed lazily during the walks (cold)");
  std::printf("mask time:    p50 %.1f us (goal <= 50), p99 %.1f us (goal <= 500), max %.1f us\n",
              testing::Percentile(mask_us, 0.5), testing::Percentile(mask_us, 0.99),
              testing::Percentile(mask_us, 1.0));
  std::printf(
      "mask CPU time (thread clock, excludes preemption): p50 %.1f us, p99 %.1f us, "
      "max %.1f us\n",
      testing::Percentile(mask_cpu_us, 0.5), testing::Percentile(mask_cpu_us, 0.99),
      testing::Percentile(mask_cpu_us, 1.0));
  std::printf("first mask of a request (wall): p50 %.1f us, p99 %.1f us\n",
              testing::Percentile(first_mask_us, 0.5), testing::Percentile(first_mask_us, 0.99));
  std::printf(
      "compile time (to the first mask's tables, wall): p50 %.1f ms, max %.1f ms (one "
      "compiler, in corpus order: shared rule tables reused)\n",
      testing::Percentile(compile_ms, 0.5), testing::Percentile(compile_ms, 1.0));
  return 0;
}
