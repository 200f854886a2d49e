#include "structured/structured_output.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <deque>

#include "common/check.h"
#include "structured/gbnf.h"
#include "structured/json_schema.h"
#include "structured/regex.h"

namespace kiln::structured {

RuleTables::RuleTables(int32_t num_states) : entries_(num_states), owned_(num_states) {
  for (auto& e : entries_) e.store(nullptr, std::memory_order_relaxed);
}

const TokenEntry* RuleTables::Get(const Automaton& automaton, const VocabIndex& vocab,
                                  int32_t local, int32_t state) const {
  const TokenEntry* e = entries_[local].load(std::memory_order_acquire);
  if (e != nullptr) return e;
  std::lock_guard<std::mutex> lock(mu_);
  e = entries_[local].load(std::memory_order_relaxed);
  if (e != nullptr) return e;
  owned_[local] = std::make_unique<const TokenEntry>(ComputeTokenEntry(automaton, vocab, state));
  e = owned_[local].get();
  bytes_.fetch_add(e->MemoryBytes(), std::memory_order_relaxed);
  entries_[local].store(e, std::memory_order_release);
  return e;
}

namespace {

double ThreadCpuMs() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

// A rule's DFA as text, with calls written as placeholders "C<j>" (j-th call in `calls`); a
// counted rule's states also list the bytes that start a character.
std::string LocalRuleSignature(const Automaton& a, int32_t rule, std::vector<int32_t>* calls) {
  std::string sig;
  const int32_t begin = a.rule_state_begin[rule];
  const int32_t end = a.rule_state_begin[rule + 1];
  const bool counted = a.counter_of[rule] >= 0;
  sig += (counted ? "K" : "S") + std::to_string(a.rule_start[rule] - begin);
  for (int32_t s = begin; s < end; ++s) {
    sig += a.is_final[s] ? ";F" : ";N";
    for (int b = 0; b < 256; ++b) {
      int32_t t = a.Next(s, static_cast<uint8_t>(b));
      if (t < 0) continue;
      const bool starts = counted && a.StartsChar(s, static_cast<uint8_t>(b));
      int c = b;
      while (c + 1 < 256 && a.Next(s, static_cast<uint8_t>(c + 1)) == t &&
             (counted && a.StartsChar(s, static_cast<uint8_t>(c + 1))) == starts) {
        ++c;
      }
      sig += "," + std::to_string(b) + "-" + std::to_string(c) + (starts ? "+" : ">") +
             std::to_string(t - begin);
      b = c;
    }
    for (const auto& call : a.calls[s]) {
      sig += ",C" + std::to_string(calls->size()) + ">" + std::to_string(call.return_state - begin);
      calls->push_back(call.rule);
    }
  }
  return sig;
}

// Canonical signature of every rule: its DFA and those of all rules it can reach, with rule ids
// renumbered in breadth-first order from it (counted rules reached through calls with their
// bounds). Equal signatures ⇒ equal token tables. A counted rule's own tables do not depend on
// its bounds (they record counts), so its own signature leaves them out and all bounds share.
std::vector<std::string> RuleSignatures(const Automaton& a) {
  const int32_t num_rules = static_cast<int32_t>(a.rule_start.size());
  std::vector<std::string> local(num_rules);
  std::vector<std::vector<int32_t>> calls(num_rules);
  for (int32_t r = 0; r < num_rules; ++r) {
    if (a.rule_start[r] >= 0) local[r] = LocalRuleSignature(a, r, &calls[r]);
  }
  auto bounds = [&](int32_t r) -> std::string {
    if (a.counter_of[r] < 0) return "";
    const Automaton::Counter& k = a.counters[a.counter_of[r]];
    return "<" + std::to_string(k.min_chars) + "," + std::to_string(k.max_chars) + ">";
  };
  std::vector<std::string> out(num_rules);
  for (int32_t r = 0; r < num_rules; ++r) {
    if (a.rule_start[r] < 0) continue;
    std::unordered_map<int32_t, int32_t> order{{r, 0}};
    std::deque<int32_t> queue{r};
    std::string sig;
    while (!queue.empty()) {
      int32_t q = queue.front();
      queue.pop_front();
      sig += local[q];
      if (q != r) sig += bounds(q);
      sig += "[";
      for (int32_t c : calls[q]) {
        auto [it, inserted] = order.try_emplace(c, static_cast<int32_t>(order.size()));
        if (inserted) queue.push_back(c);
        sig += std::to_string(it->second) + ",";
      }
      sig += "]\n";
    }
    out[r] = std::move(sig);
  }
  return out;
}

std::string FormatKey(const ResponseFormat& f) {
  std::string key = std::to_string(static_cast<int>(f.type)) + ":";
  switch (f.type) {
    case ResponseFormat::Type::kJsonSchema:
      key += f.json_schema;
      break;
    case ResponseFormat::Type::kRegex:
      key += f.regex;
      break;
    case ResponseFormat::Type::kGrammar:
      key += f.grammar;
      break;
    case ResponseFormat::Type::kChoice:
      for (const auto& c : f.choices) key += std::to_string(c.size()) + ":" + c;
      break;
    default:
      break;
  }
  return key;
}

StatusOr<Grammar> FormatToGrammar(const ResponseFormat& f) {
  switch (f.type) {
    case ResponseFormat::Type::kText:
      return Status::InvalidArgument("response_format text has no grammar to compile");
    case ResponseFormat::Type::kJsonObject:
      return AnyJsonObjectGrammar();
    case ResponseFormat::Type::kJsonSchema:
      return JsonSchemaToGrammar(f.json_schema);
    case ResponseFormat::Type::kRegex: {
      KILN_ASSIGN_OR_RETURN(ExprPtr e, RegexToExpr(f.regex, RegexMode::kRaw));
      Grammar g;
      g.root = g.AddRule("root");
      g.rules[g.root].body = e;
      return g;
    }
    case ResponseFormat::Type::kChoice: {
      if (f.choices.empty()) return Status::InvalidArgument("choice: the list of choices is empty");
      std::vector<ExprPtr> alts;
      for (const auto& c : f.choices) alts.push_back(Literal(c));
      Grammar g;
      g.root = g.AddRule("root");
      g.rules[g.root].body = Alt(std::move(alts));
      return g;
    }
    case ResponseFormat::Type::kGrammar:
      return GbnfToGrammar(f.grammar);
  }
  return Status::InvalidArgument("unknown response_format type");
}

}  // namespace

Status GrammarCompilerOptions::Validate() const {
  if (grammar_cache_capacity == 0) {
    return Status::InvalidArgument("grammar_cache_capacity must be positive");
  }
  if (limits.max_dfa_states <= 0 || limits.max_nfa_states <= 0 || !(limits.max_build_ms > 0)) {
    return Status::InvalidArgument("automaton limits must be positive");
  }
  if (!(eager_table_budget_ms >= 0)) {
    return Status::InvalidArgument("eager_table_budget_ms must be non-negative");
  }
  return Status::Ok();
}

StatusOr<std::unique_ptr<GrammarCompiler>> GrammarCompiler::Create(const VocabInfo& vocab,
                                                                   GrammarCompilerOptions options) {
  KILN_RETURN_IF_ERROR(options.Validate());
  KILN_ASSIGN_OR_RETURN(std::shared_ptr<const VocabIndex> index, VocabIndex::Build(vocab));
  return Create(std::move(index), std::move(options));
}

StatusOr<std::unique_ptr<GrammarCompiler>> GrammarCompiler::Create(
    std::shared_ptr<const VocabIndex> vocab, GrammarCompilerOptions options) {
  KILN_RETURN_IF_ERROR(options.Validate());
  if (vocab == nullptr) return Status::InvalidArgument("GrammarCompiler needs a vocabulary index");
  return std::unique_ptr<GrammarCompiler>(
      new GrammarCompiler(std::move(vocab), std::move(options)));
}

StatusOr<std::shared_ptr<const CompiledGrammar>> GrammarCompiler::Compile(
    const ResponseFormat& format) {
  const std::string key = FormatKey(format);
  std::promise<Result> promise;
  {
    std::unique_lock<std::mutex> lock(mu_);
    auto it = by_key_.find(key);
    if (it != by_key_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      return it->second->second;
    }
    auto flight = in_flight_.find(key);
    if (flight != in_flight_.end()) {
      std::shared_future<Result> result = flight->second;
      lock.unlock();
      return result.get();  // the same format is being compiled: share its result
    }
    in_flight_.emplace(key, promise.get_future().share());
  }
  Result result = CompileUncached(format);
  std::lock_guard<std::mutex> lock(mu_);
  in_flight_.erase(key);
  promise.set_value(result);
  if (!result.ok()) return result;
  if (by_key_.count(key) == 0) {
    lru_.emplace_front(key, *result);
    by_key_[key] = lru_.begin();
    while (lru_.size() > options_.grammar_cache_capacity) {
      by_key_.erase(lru_.back().first);
      lru_.pop_back();
    }
  }
  return result;
}

GrammarCompiler::~GrammarCompiler() {
  {
    std::lock_guard<std::mutex> lock(bg_mu_);
    bg_stop_ = true;
  }
  bg_cv_.notify_all();
  if (bg_thread_.joinable()) bg_thread_.join();
}

void GrammarCompiler::QueueBackground(const std::shared_ptr<const CompiledGrammar>& grammar) {
  std::lock_guard<std::mutex> lock(bg_mu_);
  if (bg_stop_) return;
  bg_queue_.push_back(grammar);
  if (!bg_thread_.joinable()) bg_thread_ = std::thread([this] { BackgroundLoop(); });
  bg_cv_.notify_one();
}

void GrammarCompiler::BackgroundLoop() {
  // Lowest CPU priority (Linux: per thread): the tables are a head start for matchers, which
  // compute any table they need themselves, so this thread must not slow request threads.
  setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 19);
  for (;;) {
    std::shared_ptr<const CompiledGrammar> g;
    {
      std::unique_lock<std::mutex> lock(bg_mu_);
      bg_cv_.wait(lock, [&] { return bg_stop_ || !bg_queue_.empty(); });
      if (bg_stop_) return;
      g = bg_queue_.front().lock();
      bg_queue_.pop_front();
    }
    if (!g) continue;  // no longer in use
    const Automaton& a = g->automaton();
    for (int32_t s = 0; s < a.num_states; ++s) {
      if (s % 16 == 0) {
        std::lock_guard<std::mutex> lock(bg_mu_);
        if (bg_stop_) return;
      }
      g->entry(s);
    }
  }
}

GrammarCompiler::Result GrammarCompiler::CompileUncached(const ResponseFormat& format) {
  num_compilations_.fetch_add(1);
  const auto t0 = std::chrono::steady_clock::now();
  const double cpu0 = ThreadCpuMs();
  KILN_ASSIGN_OR_RETURN(Grammar grammar, FormatToGrammar(format));
  return CompileGrammarSince(grammar, t0, cpu0);
}

StatusOr<std::shared_ptr<const CompiledGrammar>> GrammarCompiler::CompileGrammar(
    const Grammar& grammar) {
  return CompileGrammarSince(grammar, std::chrono::steady_clock::now(), ThreadCpuMs());
}

GrammarCompiler::Result GrammarCompiler::CompileGrammarSince(
    const Grammar& grammar, std::chrono::steady_clock::time_point t0, double cpu0) {
  AutomatonLimits limits = options_.limits;
  KILN_ASSIGN_OR_RETURN(Automaton automaton, BuildAutomaton(grammar, limits));
  auto compiled = std::make_shared<CompiledGrammar>();
  compiled->vocab_ = vocab_;
  compiled->automaton_ = std::move(automaton);
  const Automaton& a = compiled->automaton_;
  std::vector<std::string> sigs = RuleSignatures(a);
  GrammarStats& stats = compiled->stats_;
  stats.num_rules = static_cast<int>(a.rule_start.size());
  stats.num_states = a.num_states;
  compiled->tables_.resize(stats.num_rules);
  compiled->entry_cache_.reset(new std::atomic<const TokenEntry*>[a.num_states]);
  for (int32_t s = 0; s < a.num_states; ++s) compiled->entry_cache_[s].store(nullptr);
  {
    std::lock_guard<std::mutex> lock(mu_);
    size_t cached_bytes = 0;
    for (const auto& [sig, t] : rule_tables_) cached_bytes += sig.size() + t->MemoryBytes();
    if (rule_tables_.size() + stats.num_rules > options_.rule_table_cache_capacity ||
        cached_bytes > options_.rule_table_cache_bytes) {
      rule_tables_.clear();  // grammars keep the tables they hold
    }
    for (int32_t r = 0; r < stats.num_rules; ++r) {
      const int32_t n = a.rule_state_begin[r + 1] - a.rule_state_begin[r];
      auto [it, inserted] = rule_tables_.try_emplace(sigs[r], nullptr);
      if (inserted) it->second = std::make_shared<const RuleTables>(n);
      KILN_CHECK_EQ(it->second->num_states(), n);
      compiled->tables_[r] = it->second;
    }
  }
  auto ready = [&](int32_t s) {
    const int32_t r = a.rule_of[s];
    return compiled->tables_[r]->Ready(s - a.rule_state_begin[r]);
  };
  auto compute = [&](int32_t s) {
    compiled->entry(s);
    ++stats.num_entries_computed;
  };
  // The first mask's states, then others while within the budget.
  {
    StackPool pool(&a);
    Config start;
    pool.Close(pool.Get(a.rule_start[a.root_rule], kBottom), &start);
    for (int32_t n : start.nodes) {
      if (!ready(pool.node(n).state)) compute(pool.node(n).state);
    }
  }
  for (int32_t s = 0; s < a.num_states; ++s) {
    if (!a.has_bytes[s] || ready(s)) continue;
    if (ThreadCpuMs() - cpu0 >= options_.eager_table_budget_ms) break;
    compute(s);
  }
  for (int32_t s = 0; s < a.num_states; ++s) {
    if (a.has_bytes[s] && ready(s)) {
      ++stats.num_entries_ready;
      stats.entry_bytes += compiled->entry(s)->MemoryBytes();
    }
  }
  stats.compile_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  stats.compile_cpu_ms = ThreadCpuMs() - cpu0;
  std::shared_ptr<const CompiledGrammar> out = std::move(compiled);
  if (options_.background_tables) QueueBackground(out);
  return out;
}

GrammarMatcher::GrammarMatcher(std::shared_ptr<const CompiledGrammar> grammar)
    : grammar_(std::move(grammar)), pool_(&grammar_->automaton()) {
  const Automaton& a = grammar_->automaton();
  pool_.Close(pool_.Get(a.rule_start[a.root_rule], kBottom), &cur_);
  scratch_.resize(grammar_->vocab().max_token_bytes() + 2);
}

bool GrammarMatcher::AcceptBytes(std::string_view bytes) {
  if (terminated_) return false;
  Config* in = &cur_;
  for (char c : bytes) {
    Config* out = in == &tmp_a_ ? &tmp_b_ : &tmp_a_;
    pool_.Advance(*in, static_cast<uint8_t>(c), out);
    if (!out->viable()) return false;
    in = out;
  }
  if (in != &cur_) std::swap(cur_, *in);
  return true;
}

bool GrammarMatcher::WouldAccept(std::string_view bytes) {
  if (terminated_) return false;
  const Config* in = &cur_;
  for (char c : bytes) {
    Config* out = in == &tmp_a_ ? &tmp_b_ : &tmp_a_;
    pool_.Advance(*in, static_cast<uint8_t>(c), out);
    if (!out->viable()) return false;
    in = out;
  }
  return true;
}

bool GrammarMatcher::AcceptToken(int32_t id) {
  const VocabIndex& v = grammar_->vocab();
  if (terminated_ || id < 0 || id >= v.vocab_size()) return false;
  if (v.is_eos(id)) {
    if (!cur_.complete) return false;
    terminated_ = true;
    return true;
  }
  const std::string& bytes = v.token_bytes(id);
  if (bytes.empty()) return false;
  return AcceptBytes(bytes);
}

bool GrammarMatcher::IsTerminated() const {
  return terminated_ || (cur_.complete && cur_.nodes.empty());
}

const std::vector<int32_t>& GrammarMatcher::UncertainAllowed(int32_t node) {
  auto it = uncertain_memo_.find(node);
  if (it != uncertain_memo_.end()) return it->second;
  std::vector<int32_t> allowed;
  const StackPool::Node nd = pool_.node(node);
  const TokenEntry* e = grammar_->entry(nd.state);
  const Automaton& a = grammar_->automaton();
  const Automaton::Counter* counter = a.CounterOf(nd.state);
  const int32_t rule_begin = a.rule_state_begin[a.rule_of[nd.state]];
  if (nd.parent >= 0 && e != nullptr && !e->uncertain.empty()) {
    Config base;
    pool_.Close(nd.parent, &base);
    const auto& tnodes = e->uncertain.nodes();
    const auto& tags = e->uncertain.tags();
    // Iterative DFS over the suffix trie; scratch_[d] is the config after d + 1 suffix bytes.
    struct Frame {
      int32_t child;  // next child (node id) to try
      int32_t end;    // end of the parent's subtree
      int32_t depth;
    };
    std::vector<Frame> stack{{1, tnodes[0].end, 0}};
    while (!stack.empty()) {
      Frame& f = stack.back();
      if (f.child >= f.end) {
        stack.pop_back();
        continue;
      }
      const int32_t c = f.child;
      const int32_t depth = f.depth;
      f.child = tnodes[c].end;
      const Config& in = depth == 0 ? base : scratch_[depth - 1];
      Config& out = scratch_[depth];
      pool_.Advance(in, tnodes[c].byte, &out);
      if (!out.viable()) continue;
      const ByteTrie::Node& cn = tnodes[c];
      for (int32_t i = cn.sub_begin; i < cn.sub_begin + cn.num_ending; ++i) {
        if (counter == nullptr) {
          allowed.push_back(tags[i]);
          continue;
        }
        const TokenEntry::Pending& p = e->pending[tags[i]];
        if (a.Viable(*counter, rule_begin + p.end_local, int64_t{nd.count} + p.chars)) {
          allowed.push_back(p.id);
        }
      }
      if (!out.nodes.empty() && cn.end > c + 1) stack.push_back({c + 1, cn.end, depth + 1});
    }
  }
  return uncertain_memo_.emplace(node, std::move(allowed)).first->second;
}

void GrammarMatcher::FillNextTokenBitmask(uint32_t* bitmask) {
  const VocabIndex& v = grammar_->vocab();
  const int words = v.num_mask_words();
  if (terminated_) {
    std::memset(bitmask, 0, sizeof(uint32_t) * words);
    return;
  }
  std::string key;
  {
    std::vector<int32_t> sorted = cur_.nodes;
    std::sort(sorted.begin(), sorted.end());
    key.resize(sorted.size() * 4 + 1);
    std::memcpy(key.data(), sorted.data(), sorted.size() * 4);
    key.back() = cur_.complete ? 1 : 0;
  }
  auto memo = mask_memo_.find(key);
  if (memo != mask_memo_.end()) {
    std::memcpy(bitmask, memo->second.data(), sizeof(uint32_t) * words);
    return;
  }
  std::memset(bitmask, 0, sizeof(uint32_t) * words);
  for (size_t i = 0; i < cur_.nodes.size(); ++i) {
    int32_t n = cur_.nodes[i];
    const StackPool::Node& nd = pool_.node(n);
    const TokenEntry* e = grammar_->entry(nd.state);
    KILN_DCHECK(e != nullptr);
    if (e->counted) {
      OrCountedAllowed(grammar_->automaton(), *e, nd.state, nd.count, &count_scratch_, bitmask);
    } else if (!e->accepted_bits.empty()) {
      const uint32_t* src = e->accepted_bits.data();
      for (int w = 0; w < words; ++w) bitmask[w] |= src[w];
    } else {
      for (int32_t id : e->accepted_ids) bitmask[id >> 5] |= 1u << (id & 31);
    }
    for (int32_t id : UncertainAllowed(n)) bitmask[id >> 5] |= 1u << (id & 31);
  }
  if (cur_.complete) {
    for (int32_t id : v.eos_token_ids()) bitmask[id >> 5] |= 1u << (id & 31);
  }
  if (mask_memo_.size() >= 64) mask_memo_.clear();
  mask_memo_.emplace(std::move(key), std::vector<uint32_t>(bitmask, bitmask + words));
}

}  // namespace kiln::structured
