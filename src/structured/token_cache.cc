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

}  // namespace

TokenEntry ComputeTokenEntry(const Automaton& automaton, const VocabIndex& vocab, int32_t state) {
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
