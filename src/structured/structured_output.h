// Structured output (constrained decoding): ResponseFormat → CompiledGrammar → per-request
// GrammarMatcher → token bitmask applied to the logits before sampling.
//
// GrammarCompiler is built once per model from the vocabulary as data (VocabInfo: per id the bytes
// it decodes to) and compiles a ResponseFormat (json_object, json_schema, regex, choice, GBNF
// grammar) into a CompiledGrammar: a pushdown automaton (one DFA per grammar rule) plus, per
// automaton state, the classification of every vocabulary token (token_cache.h). Token tables are
// computed lazily: Compile computes those of the first mask's states (then others while within
// `eager_table_budget_ms` of thread CPU time) and returns; a background thread of the compiler
// then computes the rest, and a table a matcher needs before that is computed on its first use
// (once, whichever thread asks first) and kept. Compiled grammars are cached
// by format (LRU), and concurrent Compile calls for the same format share one compilation; per-rule
// token tables are also shared between grammars whose rules are identical (e.g. the JSON string
// and value rules).
//
// GrammarMatcher follows one request: FillNextTokenBitmask sets bit i of word i/32 for every token
// i whose bytes keep the output a prefix of some complete output (EOS ids only where the output is
// complete); AcceptToken advances. Unsupported JSON-Schema keywords are InvalidArgument naming the
// keyword — a constraint is never silently dropped.
//
// Thread-safety: GrammarCompiler is thread-safe (Compile may run on any thread, concurrently).
// CompiledGrammar is shared; its automaton is immutable and its lazily filled token tables are
// thread-safe. A GrammarMatcher belongs to one thread at a time.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
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
  int num_entries_computed = 0;  // token tables computed by Compile (not shared, not lazy)
  int num_entries_ready = 0;     // token tables ready when Compile returned (computed or shared)
  int64_t entry_bytes = 0;       // memory of the token tables ready when Compile returned
  double compile_ms = 0;         // wall time of Compile (front end + automaton + first tables)
  double compile_cpu_ms = 0;     // the same as thread CPU time (robust to a loaded machine)
};

// The token tables of one rule's states, filled on first use; shared by every grammar whose rule
// has the same signature (so any of them may fill a missing table from its own automaton).
class RuleTables final {
 public:
  explicit RuleTables(int32_t num_states);
  RuleTables(const RuleTables&) = delete;
  RuleTables& operator=(const RuleTables&) = delete;

  // The table of local state `local`, computing it from (automaton, global `state`) if missing.
  const TokenEntry* Get(const Automaton& automaton, const VocabIndex& vocab, int32_t local,
                        int32_t state) const;
  int32_t num_states() const { return static_cast<int32_t>(entries_.size()); }
  bool Ready(int32_t local) const {
    return entries_[local].load(std::memory_order_acquire) != nullptr;
  }
  // Bytes of the tables computed so far.
  size_t MemoryBytes() const { return bytes_.load(std::memory_order_relaxed); }

 private:
  mutable std::mutex mu_;  // held while computing a missing table
  mutable std::vector<std::atomic<const TokenEntry*>> entries_;  // [num_states], owned by owned_
  mutable std::vector<std::unique_ptr<const TokenEntry>> owned_;
  mutable std::atomic<size_t> bytes_{0};
};

class CompiledGrammar final {
 public:
  const Automaton& automaton() const { return automaton_; }
  const VocabIndex& vocab() const { return *vocab_; }
  // Token table of a byte-consuming state (null for states without byte transitions); computed
  // on first use (thread-safe).
  const TokenEntry* entry(int32_t state) const {
    const TokenEntry* e = entry_cache_[state].load(std::memory_order_acquire);
    if (e != nullptr || !automaton_.has_bytes[state]) return e;
    const int32_t rule = automaton_.rule_of[state];
    e = tables_[rule]->Get(automaton_, *vocab_, state - automaton_.rule_state_begin[rule], state);
    entry_cache_[state].store(e, std::memory_order_release);
    return e;
  }
  const GrammarStats& stats() const { return stats_; }

 private:
  friend class GrammarCompiler;
  Automaton automaton_;
  std::shared_ptr<const VocabIndex> vocab_;
  std::vector<std::shared_ptr<const RuleTables>> tables_;  // [num_rules]
  // [num_states]: tables_' entries seen by this grammar (one load on the mask path).
  mutable std::unique_ptr<std::atomic<const TokenEntry*>[]> entry_cache_;
  GrammarStats stats_;
};

struct GrammarCompilerOptions {
  size_t grammar_cache_capacity = 128;      // compiled grammars kept (LRU by format)
  size_t rule_table_cache_capacity = 4096;  // shared per-rule token tables kept
  // Bound on the memory of the shared tables and their keys (rule signatures); the cache is
  // emptied when it would pass either bound (grammars keep the tables they hold).
  size_t rule_table_cache_bytes = size_t{512} << 20;
  AutomatonLimits limits;
  // After the first mask's tables, Compile keeps computing tables (in state order) while its
  // thread CPU time stays below this; the rest are computed on first use. 0 = first mask only.
  double eager_table_budget_ms = 0;
  // Compute the remaining tables of compiled grammars on a background thread (one per compiler).
  bool background_tables = true;
  Status Validate() const;
};

class GrammarCompiler final {
 public:
  static StatusOr<std::unique_ptr<GrammarCompiler>> Create(const VocabInfo& vocab,
                                                           GrammarCompilerOptions options = {});
  // A compiler over an index already built (e.g. a fresh compiler per cold-compile measurement).
  static StatusOr<std::unique_ptr<GrammarCompiler>> Create(std::shared_ptr<const VocabIndex> vocab,
                                                           GrammarCompilerOptions options = {});
  GrammarCompiler(const GrammarCompiler&) = delete;
  GrammarCompiler& operator=(const GrammarCompiler&) = delete;
  ~GrammarCompiler();

  // kText is InvalidArgument (nothing to constrain).
  StatusOr<std::shared_ptr<const CompiledGrammar>> Compile(const ResponseFormat& format);
  // Compiles an already-built grammar (not cached by format).
  StatusOr<std::shared_ptr<const CompiledGrammar>> CompileGrammar(const Grammar& grammar);

  const VocabIndex& vocab() const { return *vocab_; }
  std::shared_ptr<const VocabIndex> shared_vocab() const { return vocab_; }
  // Compilations run so far (cache hits and callers that shared an in-flight one not counted).
  int64_t num_compilations() const { return num_compilations_.load(); }

 private:
  using Result = StatusOr<std::shared_ptr<const CompiledGrammar>>;
  // compile_ms counts from t0 (the front end's start when called from Compile), compile_cpu_ms
  // from cpu0 (thread CPU time).
  Result CompileGrammarSince(const Grammar& grammar, std::chrono::steady_clock::time_point t0,
                             double cpu0_ms);
  Result CompileUncached(const ResponseFormat& format);
  GrammarCompiler(std::shared_ptr<const VocabIndex> vocab, GrammarCompilerOptions options)
      : vocab_(std::move(vocab)), options_(std::move(options)) {}
  // Queues `grammar`'s missing tables for the background thread (started on first use).
  void QueueBackground(const std::shared_ptr<const CompiledGrammar>& grammar);
  void BackgroundLoop();

  std::shared_ptr<const VocabIndex> vocab_;
  GrammarCompilerOptions options_;
  std::atomic<int64_t> num_compilations_{0};
  std::mutex mu_;
  // LRU of compiled grammars keyed by the format's canonical key.
  std::list<std::pair<std::string, std::shared_ptr<const CompiledGrammar>>> lru_;
  std::unordered_map<std::string, decltype(lru_)::iterator> by_key_;
  // Compilations in progress by format key: later callers wait for the first one's result.
  std::unordered_map<std::string, std::shared_future<Result>> in_flight_;
  // Background table computation: grammars not yet complete, oldest first.
  std::mutex bg_mu_;
  std::condition_variable bg_cv_;
  std::deque<std::weak_ptr<const CompiledGrammar>> bg_queue_;
  bool bg_stop_ = false;
  std::thread bg_thread_;
  // Token tables shared across grammars, keyed by a rule's canonical signature (its DFA and the
  // DFAs of every rule it can call).
  std::unordered_map<std::string, std::shared_ptr<const RuleTables>> rule_tables_;
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
  std::vector<uint32_t> count_scratch_;  // counted frames' masks (token_cache.h)
  // Masks of recently seen configs (key: node ids + complete flag).
  std::unordered_map<std::string, std::vector<uint32_t>> mask_memo_;
};

}  // namespace kiln::structured
