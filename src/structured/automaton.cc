#include "structured/automaton.h"

#include <algorithm>
#include <functional>
#include <map>
#include <unordered_map>

namespace kiln::structured {
namespace {

// Thompson NFA of one rule body.
struct Nfa {
  struct ByteEdge {
    std::bitset<256> bytes;
    int target;
  };
  struct CallEdge {
    int rule;
    int target;
  };
  std::vector<std::vector<int>> eps;
  std::vector<std::vector<ByteEdge>> byte_edges;
  std::vector<std::vector<CallEdge>> call_edges;
  int max_states = 0;
  bool overflow = false;

  int NewState() {
    if (static_cast<int>(eps.size()) >= max_states) {
      overflow = true;
      return 0;
    }
    eps.emplace_back();
    byte_edges.emplace_back();
    call_edges.emplace_back();
    return static_cast<int>(eps.size()) - 1;
  }

  // from -ε-> fresh state -(e)-> end; returns end (0 after overflow).
  int BuildBranch(const ExprPtr& e, int from) {
    int s = NewState();
    if (overflow) return 0;
    eps[from].push_back(s);
    return Build(e, s);
  }

  // Adds `e` starting at `from`; returns the state where it ends.
  int Build(const ExprPtr& e, int from) {
    if (overflow) return 0;
    switch (e->kind) {
      case Expr::Kind::kEmpty: {
        return from;
      }
      case Expr::Kind::kNothing: {
        return NewState();
      }
      case Expr::Kind::kBytes: {
        int to = NewState();
        if (!overflow) byte_edges[from].push_back({e->bytes, to});
        return to;
      }
      case Expr::Kind::kRef: {
        int to = NewState();
        if (!overflow) call_edges[from].push_back({e->rule, to});
        return to;
      }
      case Expr::Kind::kSeq: {
        int cur = from;
        for (const auto& c : e->children) cur = Build(c, cur);
        return cur;
      }
      case Expr::Kind::kAlt: {
        int to = NewState();
        for (const auto& c : e->children) {
          int end = BuildBranch(c, from);
          if (overflow) return 0;
          eps[end].push_back(to);
        }
        return to;
      }
      case Expr::Kind::kRepeat: {
        const ExprPtr& c = e->children[0];
        int cur = from;
        for (int i = 0; i < e->min_repeat && !overflow; ++i) cur = BuildBranch(c, cur);
        if (overflow) return 0;
        if (e->max_repeat < 0) {
          // cur -> loop_start -(c)-> loop_end -> loop_start ; loop_start -> out
          int loop = NewState();
          int out = NewState();
          if (overflow) return 0;
          eps[cur].push_back(loop);
          eps[loop].push_back(out);
          int end = BuildBranch(c, loop);
          if (overflow) return 0;
          eps[end].push_back(loop);
          return out;
        }
        int out = NewState();
        if (overflow) return 0;
        eps[cur].push_back(out);
        for (int i = e->min_repeat; i < e->max_repeat && !overflow; ++i) {
          cur = BuildBranch(c, cur);
          if (overflow) return 0;
          eps[cur].push_back(out);
        }
        return out;
      }
    }
    return from;
  }

  void Closure(std::vector<int>* set) const {
    std::vector<int> stack(*set);
    std::vector<char> seen(eps.size(), 0);
    for (int s : *set) seen[s] = 1;
    while (!stack.empty()) {
      int s = stack.back();
      stack.pop_back();
      for (int t : eps[s]) {
        if (!seen[t]) {
          seen[t] = 1;
          set->push_back(t);
          stack.push_back(t);
        }
      }
    }
    std::sort(set->begin(), set->end());
  }
};

struct RuleDfa {
  std::vector<std::vector<int32_t>> next;  // [state][256]
  std::vector<uint8_t> is_final;
  std::vector<std::vector<Automaton::Call>> calls;  // return_state is rule-local here
};

Status Determinize(const Nfa& nfa, int start, int end, int max_states, RuleDfa* dfa) {
  std::map<std::vector<int>, int> ids;
  std::vector<std::vector<int>> sets;
  auto intern = [&](std::vector<int> set) -> int {
    nfa.Closure(&set);
    auto it = ids.find(set);
    if (it != ids.end()) return it->second;
    int id = static_cast<int>(sets.size());
    ids.emplace(set, id);
    sets.push_back(std::move(set));
    return id;
  };
  intern({start});
  for (size_t i = 0; i < sets.size(); ++i) {
    if (static_cast<int>(sets.size()) > max_states) {
      return Status::InvalidArgument("grammar too large: a rule needs more than " +
                                     std::to_string(max_states) + " automaton states");
    }
    std::vector<int> set = sets[i];
    std::vector<const Nfa::ByteEdge*> edges;
    std::map<int, std::vector<int>> call_targets;
    bool fin = false;
    for (int s : set) {
      if (s == end) fin = true;
      for (const auto& be : nfa.byte_edges[s]) edges.push_back(&be);
      for (const auto& ce : nfa.call_edges[s]) call_targets[ce.rule].push_back(ce.target);
    }
    std::vector<int32_t> row(256, -1);
    std::map<std::vector<int>, int> by_targets;
    for (int b = 0; b < 256; ++b) {
      std::vector<int> targets;
      for (const auto* be : edges) {
        if (be->bytes.test(b)) targets.push_back(be->target);
      }
      if (targets.empty()) continue;
      std::sort(targets.begin(), targets.end());
      targets.erase(std::unique(targets.begin(), targets.end()), targets.end());
      auto it = by_targets.find(targets);
      if (it == by_targets.end()) it = by_targets.emplace(targets, intern(targets)).first;
      row[b] = it->second;
    }
    std::vector<Automaton::Call> calls;
    for (auto& [rule, targets] : call_targets) calls.push_back({rule, intern(targets)});
    dfa->next.push_back(std::move(row));
    dfa->is_final.push_back(fin ? 1 : 0);
    dfa->calls.push_back(std::move(calls));
  }
  return Status::Ok();
}

// Depth-first search over a rule's states from its start: visit(s, push) handles state s, calls
// push(t) for the successors to explore (t < 0 ignored), and returns true to stop the search.
// Returns whether some visit stopped it.
template <typename Visit>
bool SearchFromStart(const RuleDfa& d, Visit&& visit) {
  std::vector<char> seen(d.next.size(), 0);
  std::vector<int> stack{0};
  seen[0] = 1;
  auto push = [&](int t) {
    if (t >= 0 && !seen[t]) {
      seen[t] = 1;
      stack.push_back(t);
    }
  };
  while (!stack.empty()) {
    int s = stack.back();
    stack.pop_back();
    if (visit(s, push)) return true;
  }
  return false;
}

struct IntVectorHash {
  size_t operator()(const std::vector<int>& v) const {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ v.size();
    for (int x : v) h = (h ^ static_cast<uint32_t>(x)) * 0x100000001B3ull;
    return static_cast<size_t>(h ^ (h >> 29));
  }
};

// Moore partition refinement: merges states with identical futures (finality, byte transitions
// and calls up to equivalence). Keeps state 0 as the start state.
void Minimize(RuleDfa* dfa) {
  const int n = static_cast<int>(dfa->next.size());
  std::vector<int> cls(n);
  for (int s = 0; s < n; ++s) cls[s] = dfa->is_final[s];
  int num_classes = 0;
  for (int round = 0; round < n + 1; ++round) {
    std::unordered_map<std::vector<int>, int, IntVectorHash> ids;
    std::vector<int> next_cls(n);
    for (int s = 0; s < n; ++s) {
      std::vector<int> sig;
      sig.reserve(258 + 2 * dfa->calls[s].size());
      sig.push_back(cls[s]);
      for (int b = 0; b < 256; ++b) {
        int t = dfa->next[s][b];
        sig.push_back(t < 0 ? -1 : cls[t]);
      }
      std::vector<std::pair<int, int>> calls;
      for (const auto& c : dfa->calls[s]) calls.push_back({c.rule, cls[c.return_state]});
      std::sort(calls.begin(), calls.end());
      calls.erase(std::unique(calls.begin(), calls.end()), calls.end());
      for (const auto& [r, t] : calls) {
        sig.push_back(r);
        sig.push_back(t);
      }
      auto [it, inserted] = ids.try_emplace(std::move(sig), static_cast<int>(ids.size()));
      next_cls[s] = it->second;
    }
    int count = static_cast<int>(ids.size());
    cls.swap(next_cls);
    if (count == num_classes) break;
    num_classes = count;
  }
  if (num_classes == n) return;
  // Renumber classes so that the start state's class is 0, in first-appearance order.
  std::vector<int> order(num_classes, -1);
  int next_id = 0;
  for (int s = 0; s < n; ++s) {
    if (order[cls[s]] < 0) order[cls[s]] = next_id++;
  }
  RuleDfa out;
  out.next.assign(num_classes, std::vector<int32_t>(256, -1));
  out.is_final.assign(num_classes, 0);
  out.calls.assign(num_classes, {});
  std::vector<char> done(num_classes, 0);
  for (int s = 0; s < n; ++s) {
    int c = order[cls[s]];
    if (done[c]) continue;
    done[c] = 1;
    out.is_final[c] = dfa->is_final[s];
    for (int b = 0; b < 256; ++b) {
      int t = dfa->next[s][b];
      out.next[c][b] = t < 0 ? -1 : order[cls[t]];
    }
    std::vector<std::pair<int, int>> calls;
    for (const auto& call : dfa->calls[s])
      calls.push_back({call.rule, order[cls[call.return_state]]});
    std::sort(calls.begin(), calls.end());
    calls.erase(std::unique(calls.begin(), calls.end()), calls.end());
    for (const auto& [r, t] : calls) out.calls[c].push_back({r, t});
  }
  *dfa = std::move(out);
}

}  // namespace

StatusOr<Automaton> BuildAutomaton(const Grammar& grammar, const AutomatonLimits& limits) {
  const int num_rules = static_cast<int>(grammar.rules.size());
  if (grammar.root < 0 || grammar.root >= num_rules) {
    return Status::InvalidArgument("grammar has no root rule");
  }
  std::vector<RuleDfa> dfas(num_rules);
  int total_nfa = 0;
  for (int r = 0; r < num_rules; ++r) {
    const Rule& rule = grammar.rules[r];
    if (!rule.body) return Status::InvalidArgument("rule '" + rule.name + "' is not defined");
    Nfa nfa;
    nfa.max_states = limits.max_nfa_states;
    int start = nfa.NewState();
    int end = nfa.Build(rule.body, start);
    if (nfa.overflow) {
      return Status::InvalidArgument("grammar too large: rule '" + rule.name +
                                     "' needs more than " + std::to_string(limits.max_nfa_states) +
                                     " NFA states");
    }
    total_nfa += static_cast<int>(nfa.eps.size());
    for (auto& edges : nfa.call_edges) {
      for (auto& ce : edges) {
        if (ce.rule < 0 || ce.rule >= num_rules) {
          return Status::InvalidArgument("rule '" + rule.name + "' refers to an unknown rule");
        }
      }
    }
    KILN_RETURN_IF_ERROR(Determinize(nfa, start, end, limits.max_dfa_states, &dfas[r]));
    Minimize(&dfas[r]);
  }

  // Productive rules: some path start → final over bytes and calls to productive rules.
  std::vector<char> productive(num_rules, 0);
  auto reaches_final = [&](int r) {
    const RuleDfa& d = dfas[r];
    return SearchFromStart(d, [&](int s, auto& push) {
      if (d.is_final[s]) return true;
      for (int b = 0; b < 256; ++b) push(d.next[s][b]);
      for (const auto& c : d.calls[s]) {
        if (productive[c.rule]) push(c.return_state);
      }
      return false;
    });
  };
  for (bool changed = true; changed;) {
    changed = false;
    for (int r = 0; r < num_rules; ++r) {
      if (!productive[r] && reaches_final(r)) {
        productive[r] = 1;
        changed = true;
      }
    }
  }
  if (!productive[grammar.root]) {
    return Status::InvalidArgument("the constraint admits no complete output (empty language)");
  }

  // Drop calls to unproductive rules, then states that cannot reach a final state.
  std::vector<std::vector<char>> live(num_rules);
  for (int r = 0; r < num_rules; ++r) {
    RuleDfa& d = dfas[r];
    const int n = static_cast<int>(d.next.size());
    for (auto& calls : d.calls) {
      calls.erase(std::remove_if(calls.begin(), calls.end(),
                                 [&](const Automaton::Call& c) { return !productive[c.rule]; }),
                  calls.end());
    }
    std::vector<std::vector<int>> preds(n);
    for (int s = 0; s < n; ++s) {
      for (int b = 0; b < 256; ++b) {
        if (d.next[s][b] >= 0) preds[d.next[s][b]].push_back(s);
      }
      for (const auto& c : d.calls[s]) preds[c.return_state].push_back(s);
    }
    live[r].assign(n, 0);
    std::vector<int> stack;
    for (int s = 0; s < n; ++s) {
      if (d.is_final[s]) {
        live[r][s] = 1;
        stack.push_back(s);
      }
    }
    while (!stack.empty()) {
      int s = stack.back();
      stack.pop_back();
      for (int p : preds[s]) {
        if (!live[r][p]) {
          live[r][p] = 1;
          stack.push_back(p);
        }
      }
    }
    for (int s = 0; s < n; ++s) {
      for (int b = 0; b < 256; ++b) {
        if (d.next[s][b] >= 0 && !live[r][d.next[s][b]]) d.next[s][b] = -1;
      }
      auto& calls = d.calls[s];
      calls.erase(
          std::remove_if(calls.begin(), calls.end(),
                         [&](const Automaton::Call& c) { return !live[r][c.return_state]; }),
          calls.end());
    }
  }

  // Left recursion: a rule reaching a call to itself through nullable calls only.
  std::vector<char> nullable(num_rules, 0);
  for (bool changed = true; changed;) {
    changed = false;
    for (int r = 0; r < num_rules; ++r) {
      if (nullable[r] || !productive[r]) continue;
      const RuleDfa& d = dfas[r];
      bool found = SearchFromStart(d, [&](int s, auto& push) {
        if (d.is_final[s]) return true;
        for (const auto& c : d.calls[s]) {
          if (nullable[c.rule]) push(c.return_state);
        }
        return false;
      });
      if (found) {
        nullable[r] = 1;
        changed = true;
      }
    }
  }
  std::vector<std::vector<int>> left_calls(num_rules);
  for (int r = 0; r < num_rules; ++r) {
    const RuleDfa& d = dfas[r];
    SearchFromStart(d, [&](int s, auto& push) {
      for (const auto& c : d.calls[s]) {
        left_calls[r].push_back(c.rule);
        if (nullable[c.rule]) push(c.return_state);
      }
      return false;
    });
  }
  std::vector<int> color(num_rules, 0);
  std::function<int(int)> find_cycle = [&](int r) -> int {
    color[r] = 1;
    for (int c : left_calls[r]) {
      if (color[c] == 1) return c;
      if (color[c] == 0) {
        int found = find_cycle(c);
        if (found >= 0) return found;
      }
    }
    color[r] = 2;
    return -1;
  };
  for (int r = 0; r < num_rules; ++r) {
    if (color[r] == 0) {
      int c = find_cycle(r);
      if (c >= 0) {
        return Status::InvalidArgument("left recursion through rule '" + grammar.rules[c].name +
                                       "' is not supported");
      }
    }
  }

  // Flatten (live states only).
  Automaton a;
  a.root_rule = grammar.root;
  a.rule_start.assign(num_rules, -1);
  a.rule_has_calls.assign(num_rules, 0);
  std::vector<std::vector<int32_t>> global(num_rules);
  int32_t count = 0;
  a.rule_state_begin.assign(num_rules + 1, 0);
  for (int r = 0; r < num_rules; ++r) {
    a.rule_state_begin[r] = count;
    global[r].assign(dfas[r].next.size(), -1);
    for (size_t s = 0; s < dfas[r].next.size(); ++s) {
      if (live[r][s]) global[r][s] = count++;
    }
    a.rule_start[r] = global[r][0];
  }
  a.rule_state_begin[num_rules] = count;
  if (count > limits.max_dfa_states) {
    return Status::InvalidArgument("grammar too large: " + std::to_string(count) +
                                   " automaton states (limit " +
                                   std::to_string(limits.max_dfa_states) + ")");
  }
  a.num_states = count;
  a.next.assign(static_cast<size_t>(count) * 256, -1);
  a.is_final.assign(count, 0);
  a.has_bytes.assign(count, 0);
  a.rule_of.assign(count, 0);
  a.calls.assign(count, {});
  for (int r = 0; r < num_rules; ++r) {
    const RuleDfa& d = dfas[r];
    for (size_t s = 0; s < d.next.size(); ++s) {
      int32_t g = global[r][s];
      if (g < 0) continue;
      a.rule_of[g] = r;
      a.is_final[g] = d.is_final[s];
      for (int b = 0; b < 256; ++b) {
        int32_t t = d.next[s][b];
        if (t >= 0) {
          a.next[static_cast<size_t>(g) * 256 + b] = global[r][t];
          a.has_bytes[g] = 1;
        }
      }
      for (const auto& c : d.calls[s]) {
        if (a.rule_start[c.rule] < 0) continue;
        a.calls[g].push_back({c.rule, global[r][c.return_state]});
        a.rule_has_calls[r] = 1;
      }
    }
  }
  (void)total_nfa;
  return a;
}

}  // namespace kiln::structured
