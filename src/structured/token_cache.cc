#include "structured/token_cache.h"

#include <algorithm>
#include <string>

#include "structured/stack_pool.h"

namespace kiln::structured {
namespace {

// Collects the classification while walking the vocabulary trie.
struct Collector {
  const VocabIndex* vocab;
  std::vector<int32_t> accepted;
  std::vector<std::pair<std::string, int32_t>> uncertain;
  std::vector<int32_t> pops;  // depths (bytes consumed) where the rule may complete, ascending

  void Uncertain(int32_t id) {
    const std::string& bytes = vocab->token_bytes(id);
    for (int32_t k : pops) {
      if (k > 0 && k < static_cast<int32_t>(bytes.size()))
        uncertain.emplace_back(bytes.substr(k), id);
    }
  }
};

// Walk state for a rule without calls: a single DFA state (or -1) plus "may complete here".
struct LeafCursor {
  int32_t state = -1;
  bool complete = false;
  bool alive() const { return state >= 0; }
};

// One visit of trie node `node` reached with cursor state `alive`/`complete` at depth `depth`.
template <typename Walker>
void Visit(const ByteTrie& trie, int32_t node, int32_t depth, bool alive, bool complete,
           Collector* col, Walker&& descend) {
  const ByteTrie::Node& n = trie.nodes()[node];
  const auto& tags = trie.tags();
  if (complete) col->pops.push_back(depth);
  for (int32_t i = n.sub_begin; i < n.sub_begin + n.num_ending; ++i) {
    if (alive || complete) {
      col->accepted.push_back(tags[i]);
    } else {
      col->Uncertain(tags[i]);
    }
  }
  if (alive) {
    descend();
  } else if (!col->pops.empty()) {
    for (int32_t i = n.sub_begin + n.num_ending; i < n.sub_end; ++i) col->Uncertain(tags[i]);
  }
  if (complete) col->pops.pop_back();
}

void WalkLeaf(const Automaton& a, const ByteTrie& trie, int32_t node, int32_t depth, int32_t state,
              Collector* col) {
  const auto& nodes = trie.nodes();
  const int32_t end = nodes[node].end;
  for (int32_t c = node + 1; c < end; c = nodes[c].end) {
    int32_t t = a.Next(state, nodes[c].byte);
    if (t < 0) {
      if (!col->pops.empty()) {
        const ByteTrie::Node& cn = trie.nodes()[c];
        for (int32_t i = cn.sub_begin; i < cn.sub_end; ++i) col->Uncertain(trie.tags()[i]);
      }
      continue;
    }
    bool alive = a.has_bytes[t];
    bool complete = a.is_final[t];
    Visit(trie, c, depth + 1, alive, complete, col,
          [&] { WalkLeaf(a, trie, c, depth + 1, t, col); });
  }
}

void WalkGeneric(const ByteTrie& trie, StackPool* pool, int32_t node, int32_t depth,
                 const Config& cfg, std::vector<Config>* scratch, Collector* col) {
  const auto& nodes = trie.nodes();
  const int32_t end = nodes[node].end;
  for (int32_t c = node + 1; c < end; c = nodes[c].end) {
    Config& next = (*scratch)[depth];
    pool->Advance(cfg, nodes[c].byte, &next);
    if (!next.viable()) {
      if (!col->pops.empty()) {
        const ByteTrie::Node& cn = trie.nodes()[c];
        for (int32_t i = cn.sub_begin; i < cn.sub_end; ++i) col->Uncertain(trie.tags()[i]);
      }
      continue;
    }
    Visit(trie, c, depth + 1, !next.nodes.empty(), next.complete, col,
          [&] { WalkGeneric(trie, pool, c, depth + 1, (*scratch)[depth], scratch, col); });
  }
}

// Counted rules: walks the rule's DFA (leaf) recording per token its added characters and end
// state; a final state (the closing quote) makes every longer token in the subtree uncertain.
struct CountedCollector {
  const VocabIndex* vocab;
  int32_t rule_begin;
  struct Acc {
    int32_t end_local, chars, id;
    bool operator<(const Acc& o) const {
      return end_local != o.end_local ? end_local < o.end_local
             : chars != o.chars       ? chars < o.chars
                                      : id < o.id;
    }
  };
  std::vector<Acc> accepted;
  std::vector<std::pair<std::string, int32_t>> uncertain;  // tag = index into pending
  std::vector<TokenEntry::Pending> pending;
};

void WalkCounted(const Automaton& a, const ByteTrie& trie, int32_t node, int32_t depth,
                 int32_t state, int32_t chars, CountedCollector* col) {
  const auto& nodes = trie.nodes();
  const auto& tags = trie.tags();
  const int32_t end = nodes[node].end;
  for (int32_t c = node + 1; c < end; c = nodes[c].end) {
    const uint8_t byte = nodes[c].byte;
    const int32_t t = a.Next(state, byte);
    if (t < 0) continue;
    const int32_t n = chars + (a.StartsChar(state, byte) ? 1 : 0);
    const ByteTrie::Node& cn = nodes[c];
    for (int32_t i = cn.sub_begin; i < cn.sub_begin + cn.num_ending; ++i) {
      col->accepted.push_back({t - col->rule_begin, n, tags[i]});
    }
    if (a.is_final[t]) {
      for (int32_t i = cn.sub_begin + cn.num_ending; i < cn.sub_end; ++i) {
        const std::string& bytes = col->vocab->token_bytes(tags[i]);
        col->uncertain.emplace_back(bytes.substr(depth + 1),
                                    static_cast<int32_t>(col->pending.size()));
        col->pending.push_back({tags[i], n, t - col->rule_begin});
      }
    }
    if (a.has_bytes[t]) WalkCounted(a, trie, c, depth + 1, t, n, col);
  }
}

void SetBits(const std::vector<int32_t>& ids, uint32_t* bitmask) {
  for (int32_t id : ids) bitmask[id >> 5] |= 1u << (id & 31);
}

}  // namespace

void OrCountedAllowed(const Automaton& automaton, const TokenEntry& entry, int32_t state,
                      int32_t count, std::vector<uint32_t>* scratch, uint32_t* bitmask) {
  const Automaton::Counter& k = *automaton.CounterOf(state);
  const int32_t begin = automaton.rule_state_begin[automaton.rule_of[state]];
  size_t allowed = 0, refused = 0;
  for (const auto& run : entry.runs) {
    (automaton.Viable(k, begin + run.end_local, int64_t{count} + run.chars) ? allowed : refused) +=
        run.end - run.begin;
  }
  if (refused == 0) {
    if (!entry.accepted_bits.empty()) {
      for (size_t w = 0; w < entry.accepted_bits.size(); ++w) bitmask[w] |= entry.accepted_bits[w];
    } else {
      SetBits(entry.accepted_ids, bitmask);
    }
    return;
  }
  if (allowed <= refused || entry.accepted_bits.empty()) {
    for (const auto& run : entry.runs) {
      if (!automaton.Viable(k, begin + run.end_local, int64_t{count} + run.chars)) continue;
      for (int32_t i = run.begin; i < run.end; ++i) {
        const int32_t id = entry.run_ids[i];
        bitmask[id >> 5] |= 1u << (id & 31);
      }
    }
    return;
  }
  // Most are allowed: all, minus the refused ones.
  std::vector<uint32_t>& s = *scratch;
  s.assign(entry.accepted_bits.begin(), entry.accepted_bits.end());
  for (const auto& run : entry.runs) {
    if (automaton.Viable(k, begin + run.end_local, int64_t{count} + run.chars)) continue;
    for (int32_t i = run.begin; i < run.end; ++i) {
      const int32_t id = entry.run_ids[i];
      s[id >> 5] &= ~(1u << (id & 31));
    }
  }
  for (size_t w = 0; w < s.size(); ++w) bitmask[w] |= s[w];
}

namespace {

TokenEntry ComputeCountedEntry(const Automaton& a, const VocabIndex& vocab, int32_t state) {
  CountedCollector col;
  col.vocab = &vocab;
  col.rule_begin = a.rule_state_begin[a.rule_of[state]];
  WalkCounted(a, vocab.trie(), 0, 0, state, 0, &col);
  TokenEntry e;
  e.counted = true;
  std::sort(col.accepted.begin(), col.accepted.end());
  e.num_accepted = static_cast<int32_t>(col.accepted.size());
  e.run_ids.reserve(col.accepted.size());
  for (size_t i = 0; i < col.accepted.size(); ++i) {
    const auto& x = col.accepted[i];
    if (i == 0 || x.end_local != col.accepted[i - 1].end_local ||
        x.chars != col.accepted[i - 1].chars) {
      e.runs.push_back({x.end_local, x.chars, static_cast<int32_t>(i), 0});
    }
    e.runs.back().end = static_cast<int32_t>(i) + 1;
    e.run_ids.push_back(x.id);
  }
  if (e.num_accepted > vocab.vocab_size() / 32) {
    e.accepted_bits.assign(vocab.num_mask_words(), 0);
    SetBits(e.run_ids, e.accepted_bits.data());
  } else {
    e.accepted_ids = e.run_ids;
    std::sort(e.accepted_ids.begin(), e.accepted_ids.end());
  }
  e.num_uncertain = static_cast<int32_t>(col.uncertain.size());
  e.pending = std::move(col.pending);
  e.uncertain.Build(std::move(col.uncertain));
  return e;
}

}  // namespace

TokenEntry ComputeTokenEntry(const Automaton& automaton, const VocabIndex& vocab, int32_t state) {
  if (automaton.CounterOf(state) != nullptr) return ComputeCountedEntry(automaton, vocab, state);
  Collector col;
  col.vocab = &vocab;
  const ByteTrie& trie = vocab.trie();
  if (!automaton.rule_has_calls[automaton.rule_of[state]]) {
    WalkLeaf(automaton, trie, 0, 0, state, &col);
  } else {
    StackPool pool(&automaton);
    Config start;
    start.nodes.push_back(pool.Get(state, kBase));
    std::vector<Config> scratch(vocab.max_token_bytes() + 2);
    WalkGeneric(trie, &pool, 0, 0, start, &scratch, &col);
  }
  TokenEntry e;
  e.num_accepted = static_cast<int32_t>(col.accepted.size());
  if (e.num_accepted > vocab.vocab_size() / 32) {
    e.accepted_bits.assign(vocab.num_mask_words(), 0);
    for (int32_t id : col.accepted) e.accepted_bits[id >> 5] |= 1u << (id & 31);
  } else {
    std::sort(col.accepted.begin(), col.accepted.end());
    e.accepted_ids = std::move(col.accepted);
  }
  e.num_uncertain = static_cast<int32_t>(col.uncertain.size());
  e.uncertain.Build(std::move(col.uncertain));
  return e;
}

}  // namespace kiln::structured
