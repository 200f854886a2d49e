// Structured output (constrained decoding): ResponseFormat → CompiledGrammar → per-request
// GrammarMatcher → token bitmask applied to the logits before sampling.
//
// GrammarCompiler is built once per model from the vocabulary as data (VocabInfo: per id the bytes
// it decodes to) and compiles a ResponseFormat (json_object, json_schema, regex, choice, GBNF
// grammar) into an immutable CompiledGrammar: a pushdown automaton (one DFA per grammar rule) plus,
// per automaton state, the precomputed classification of every vocabulary token (token_cache.h).
// Compiled grammars are cached by format (LRU); per-rule token tables are also shared between
// grammars whose rules are identical (e.g. the JSON string and value rules).
//
// GrammarMatcher follows one request: FillNextTokenBitmask sets bit i of word i/32 for every token
// i whose bytes keep the output a prefix of some complete output (EOS ids only where the output is
// complete); AcceptToken advances. Unsupported JSON-Schema keywords are InvalidArgument naming the
// keyword — a constraint is never silently dropped.
//
// Thread-safety: GrammarCompiler is thread-safe (Compile may run on any thread, concurrently).
// CompiledGrammar is immutable and shared. A GrammarMatcher belongs to one thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "kiln/request.h"
#include "kiln/status.h"
#include "structured/automaton.h"
#include "structured/grammar.h"
#include "structured/stack_pool.h"
#include "structured/token_cache.h"
#include "structured/vocab_index.h"

namespace kiln::structured {

struct GrammarStats {
  int num_rules = 0;
  int num_states = 0;            // automaton states
  int num_entries_computed = 0;  // token tables computed (not taken from the shared cache)
  int64_t entry_bytes = 0;       // memory of this grammar's token tables
  double compile_ms = 0;         // wall time of Compile (front end + automaton + token tables)
};

class CompiledGrammar final {
 public:
  const Automaton& automaton() const { return automaton_; }
  const VocabIndex& vocab() const { return *vocab_; }
  // Token table of a byte-consuming state (null for states without byte transitions).
  const TokenEntry* entry(int32_t state) const { return entries_[state].get(); }
  const GrammarStats& stats() const { return stats_; }

 private:
  friend class GrammarCompiler;
  Automaton automaton_;
  std::shared_ptr<const VocabIndex> vocab_;
  std::vector<std::shared_ptr<const TokenEntry>> entries_;  // [num_states]
  GrammarStats stats_;
};

struct GrammarCompilerOptions {
  size_t grammar_cache_capacity = 128;      // compiled grammars kept (LRU by format)
  size_t rule_table_cache_capacity = 4096;  // shared per-rule token tables kept
  // Bound on the memory of the shared tables and their keys (rule signatures); the cache is
  // emptied when it would pass either bound (grammars keep the tables they hold).
  size_t rule_table_cache_bytes = size_t{512} << 20;
  AutomatonLimits limits;
  Status Validate() const;
};

class GrammarCompiler final {
 public:
  static StatusOr<std::unique_ptr<GrammarCompiler>> Create(const VocabInfo& vocab,
                                                           GrammarCompilerOptions options = {});
  GrammarCompiler(const GrammarCompiler&) = delete;
  GrammarCompiler& operator=(const GrammarCompiler&) = delete;

  // kText is InvalidArgument (nothing to constrain).
  StatusOr<std::shared_ptr<const CompiledGrammar>> Compile(const ResponseFormat& format);
  // Compiles an already-built grammar (not cached by format).
  StatusOr<std::shared_ptr<const CompiledGrammar>> CompileGrammar(const Grammar& grammar);

  const VocabIndex& vocab() const { return *vocab_; }

 private:
  struct RuleTables;
  // compile_ms counts from t0 (the front end's start when called from Compile).
  StatusOr<std::shared_ptr<const CompiledGrammar>> CompileGrammarSince(
      const Grammar& grammar, std::chrono::steady_clock::time_point t0);
  GrammarCompiler(std::shared_ptr<const VocabIndex> vocab, GrammarCompilerOptions options)
      : vocab_(std::move(vocab)), options_(std::move(options)) {}

  std::shared_ptr<const VocabIndex> vocab_;
  GrammarCompilerOptions options_;
  std::mutex mu_;
  // LRU of compiled grammars keyed by the format's canonical key.
  std::list<std::pair<std::string, std::shared_ptr<const CompiledGrammar>>> lru_;
  std::unordered_map<std::string, decltype(lru_)::iterator> by_key_;
  // Token tables shared across grammars, keyed by a rule's canonical signature (its DFA and the
  // DFAs of every rule it can call).
  std::unordered_map<std::string, std::shared_ptr<const RuleTables>> rule_tables_;
  size_t rule_table_bytes_ = 0;
};

class GrammarMatcher final {
 public:
  explicit GrammarMatcher(std::shared_ptr<const CompiledGrammar> grammar);
  GrammarMatcher(const GrammarMatcher&) = delete;
  GrammarMatcher& operator=(const GrammarMatcher&) = delete;

  // Writes ceil(vocab/32) words. After termination only nothing is allowed.
  void FillNextTokenBitmask(uint32_t* bitmask);
  // Advances by `id`; false (state unchanged) when the token is not allowed. An EOS id is
  // accepted where the output is complete and terminates the matcher.
  bool AcceptToken(int32_t id);
  // Advances by raw bytes (tests, jump-forward); false (state unchanged) when not a viable prefix.
  bool AcceptBytes(std::string_view bytes);
  // Whether AcceptBytes(bytes) would succeed; the state is unchanged (slow path: tests, checks).
  bool WouldAccept(std::string_view bytes);
  // Complete and nothing more can follow (or EOS was accepted): finish with "stop".
  bool IsTerminated() const;
  // The output so far is complete (EOS allowed).
  bool CanTerminate() const { return !terminated_ && cur_.complete; }
  int num_mask_words() const { return grammar_->vocab().num_mask_words(); }
  const CompiledGrammar& grammar() const { return *grammar_; }

 private:
  // Ids of `node`'s uncertain tokens whose suffix the frames below `node` accept (memoized).
  const std::vector<int32_t>& UncertainAllowed(int32_t node);

  std::shared_ptr<const CompiledGrammar> grammar_;
  StackPool pool_;
  Config cur_;
  Config tmp_a_, tmp_b_;
  bool terminated_ = false;
  std::unordered_map<int32_t, std::vector<int32_t>> uncertain_memo_;
  std::vector<Config> scratch_;
  // Masks of recently seen configs (key: node ids + complete flag).
  std::unordered_map<std::string, std::vector<uint32_t>> mask_memo_;
};

}  // namespace kiln::structured
