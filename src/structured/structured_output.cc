#include "structured/structured_output.h"

#include <algorithm>
#include <cstring>
#include <deque>

#include "common/check.h"
#include "structured/gbnf.h"
#include "structured/json_schema.h"
#include "structured/regex.h"

namespace kiln::structured {

struct GrammarCompiler::RuleTables {
  std::vector<std::shared_ptr<const TokenEntry>> entries;  // per local state of the rule
};

namespace {

// A rule's DFA as text, with calls written as placeholders "C<j>" (j-th call in `calls`).
std::string LocalRuleSignature(const Automaton& a, int32_t rule, std::vector<int32_t>* calls) {
  std::string sig;
  const int32_t begin = a.rule_state_begin[rule];
  const int32_t end = a.rule_state_begin[rule + 1];
  sig += "S" + std::to_string(a.rule_start[rule] - begin);
  for (int32_t s = begin; s < end; ++s) {
    sig += a.is_final[s] ? ";F" : ";N";
    for (int b = 0; b < 256; ++b) {
      int32_t t = a.Next(s, static_cast<uint8_t>(b));
      if (t < 0) continue;
      int c = b;
      while (c + 1 < 256 && a.Next(s, static_cast<uint8_t>(c + 1)) == t) ++c;
      sig += "," + std::to_string(b) + "-" + std::to_string(c) + ">" + std::to_string(t - begin);
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
// renumbered in breadth-first order from it. Equal signatures ⇒ equal token tables.
std::vector<std::string> RuleSignatures(const Automaton& a) {
  const int32_t num_rules = static_cast<int32_t>(a.rule_start.size());
  std::vector<std::string> local(num_rules);
  std::vector<std::vector<int32_t>> calls(num_rules);
  for (int32_t r = 0; r < num_rules; ++r) {
    if (a.rule_start[r] >= 0) local[r] = LocalRuleSignature(a, r, &calls[r]);
  }
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
  if (limits.max_dfa_states <= 0 || limits.max_nfa_states <= 0) {
    return Status::InvalidArgument("automaton limits must be positive");
  }
  return Status::Ok();
}

StatusOr<std::unique_ptr<GrammarCompiler>> GrammarCompiler::Create(const VocabInfo& vocab,
                                                                   GrammarCompilerOptions options) {
  KILN_RETURN_IF_ERROR(options.Validate());
  KILN_ASSIGN_OR_RETURN(std::shared_ptr<const VocabIndex> index, VocabIndex::Build(vocab));
  return std::unique_ptr<GrammarCompiler>(
      new GrammarCompiler(std::move(index), std::move(options)));
}

StatusOr<std::shared_ptr<const CompiledGrammar>> GrammarCompiler::Compile(
    const ResponseFormat& format) {
  const std::string key = FormatKey(format);
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = by_key_.find(key);
    if (it != by_key_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      return it->second->second;
    }
  }
  auto t0 = std::chrono::steady_clock::now();
  KILN_ASSIGN_OR_RETURN(Grammar grammar, FormatToGrammar(format));
  KILN_ASSIGN_OR_RETURN(std::shared_ptr<const CompiledGrammar> compiled,
                        CompileGrammarSince(grammar, t0));
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_key_.find(key);
  if (it != by_key_.end()) return it->second->second;
  lru_.emplace_front(key, compiled);
  by_key_[key] = lru_.begin();
  while (lru_.size() > options_.grammar_cache_capacity) {
    by_key_.erase(lru_.back().first);
    lru_.pop_back();
  }
  return compiled;
}

StatusOr<std::shared_ptr<const CompiledGrammar>> GrammarCompiler::CompileGrammar(
    const Grammar& grammar) {
  return CompileGrammarSince(grammar, std::chrono::steady_clock::now());
}

StatusOr<std::shared_ptr<const CompiledGrammar>> GrammarCompiler::CompileGrammarSince(
    const Grammar& grammar, std::chrono::steady_clock::time_point t0) {
  KILN_ASSIGN_OR_RETURN(Automaton automaton, BuildAutomaton(grammar, options_.limits));
  auto compiled = std::make_shared<CompiledGrammar>();
  compiled->vocab_ = vocab_;
  compiled->automaton_ = std::move(automaton);
  const Automaton& a = compiled->automaton_;
  compiled->entries_.assign(a.num_states, nullptr);
  std::vector<std::string> sigs = RuleSignatures(a);
  GrammarStats& stats = compiled->stats_;
  stats.num_rules = static_cast<int>(a.rule_start.size());
  stats.num_states = a.num_states;
  for (int32_t r = 0; r < stats.num_rules; ++r) {
    const int32_t begin = a.rule_state_begin[r];
    const int32_t end = a.rule_state_begin[r + 1];
    if (begin == end) continue;
    std::shared_ptr<const RuleTables> tables;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = rule_tables_.find(sigs[r]);
      if (it != rule_tables_.end()) tables = it->second;
    }
    if (!tables) {
      auto fresh = std::make_shared<RuleTables>();
      fresh->entries.resize(end - begin);
      for (int32_t s = begin; s < end; ++s) {
        if (!a.has_bytes[s]) continue;
        fresh->entries[s - begin] =
            std::make_shared<const TokenEntry>(ComputeTokenEntry(a, *vocab_, s));
        ++stats.num_entries_computed;
      }
      tables = fresh;
      std::lock_guard<std::mutex> lock(mu_);
      size_t bytes = sigs[r].size();
      for (const auto& e : fresh->entries) bytes += e ? e->MemoryBytes() : 0;
      if (rule_tables_.size() >= options_.rule_table_cache_capacity ||
          rule_table_bytes_ + bytes > options_.rule_table_cache_bytes) {
        rule_tables_.clear();
        rule_table_bytes_ = 0;
      }
      if (rule_tables_.emplace(sigs[r], tables).second) rule_table_bytes_ += bytes;
    }
    KILN_CHECK_EQ(static_cast<int32_t>(tables->entries.size()), end - begin);
    for (int32_t s = begin; s < end; ++s) {
      compiled->entries_[s] = tables->entries[s - begin];
      if (compiled->entries_[s]) stats.entry_bytes += compiled->entries_[s]->MemoryBytes();
    }
  }
  stats.compile_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return std::shared_ptr<const CompiledGrammar>(std::move(compiled));
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
        allowed.push_back(tags[i]);
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
    const TokenEntry* e = grammar_->entry(pool_.node(n).state);
    KILN_DCHECK(e != nullptr);
    if (!e->accepted_bits.empty()) {
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
