#include "structured/automaton.h"

#include <algorithm>
#include <ctime>
#include <functional>
#include <map>
#include <unordered_map>

namespace kiln::structured {
namespace {

// Thread-CPU-time budget of one build.
class Budget {
 public:
  explicit Budget(double max_ms) : max_ms_(max_ms), start_ms_(NowMs()) {}
  // InvalidArgument once the budget is spent; cheap enough to call per DFA state.
  Status Check() const {
    if (NowMs() - start_ms_ <= max_ms_) return Status::Ok();
    return Status::InvalidArgument("grammar too complex: building its automaton takes more than " +
                                   std::to_string(static_cast<int>(max_ms_)) +
                                   " ms of CPU time (simplify nested repetition counts)");
  }

 private:
  static double NowMs() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
  }
  double max_ms_;
  double start_ms_;
};

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
  std::vector<std::bitset<256>> starts_char;        // [state], counted rules only
};

Status Determinize(const Nfa& nfa, int start, int end, int max_states, const Budget& budget,
                   RuleDfa* dfa) {
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
    if (i % 64 == 63) KILN_RETURN_IF_ERROR(budget.Check());
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
    // Targets per byte, gathered edge by edge (each edge touches only its own bytes).
    std::vector<std::vector<int>> per_byte(256);
    for (const auto* be : edges) {
      for (size_t b = be->bytes._Find_first(); b < 256; b = be->bytes._Find_next(b)) {
        per_byte[b].push_back(be->target);
      }
    }
    for (int b = 0; b < 256; ++b) {
      std::vector<int>& targets = per_byte[b];
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
Status Minimize(const Budget& budget, RuleDfa* dfa) {
  const int n = static_cast<int>(dfa->next.size());
  std::vector<int> cls(n);
  for (int s = 0; s < n; ++s) cls[s] = dfa->is_final[s];
  // Rows as runs (first byte, target) of equal targets: a few per state instead of 256.
  std::vector<std::vector<std::pair<int, int>>> runs(n);
  for (int s = 0; s < n; ++s) {
    for (int b = 0; b < 256; ++b) {
      const int t = dfa->next[s][b];
      if (b == 0 || t != dfa->next[s][b - 1]) runs[s].push_back({b, t});
    }
  }
  int num_classes = 0;
  for (int round = 0; round < n + 1; ++round) {
    KILN_RETURN_IF_ERROR(budget.Check());
    std::unordered_map<std::vector<int>, int, IntVectorHash> ids;
    std::vector<int> next_cls(n);
    for (int s = 0; s < n; ++s) {
      std::vector<int> sig;
      sig.reserve(1 + 2 * runs[s].size() + 2 * dfa->calls[s].size());
      sig.push_back(cls[s]);
      for (const auto& [b, t] : runs[s]) {
        const int c = t < 0 ? -1 : cls[t];
        // Adjacent runs whose targets share a class merge, so equal rows give equal signatures.
        if (sig.size() > 1 && sig.back() == c) continue;
        sig.push_back(b);
        sig.push_back(c);
      }
      sig.push_back(-2);  // row ends, calls follow
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
  if (num_classes == n) return Status::Ok();
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
  return Status::Ok();
}

// NFA → minimal DFA of one expression (start state 0).
Status BuildRuleDfa(const ExprPtr& body, const std::string& name, const AutomatonLimits& limits,
                    const Budget& budget, RuleDfa* dfa) {
  Nfa nfa;
  nfa.max_states = limits.max_nfa_states;
  int start = nfa.NewState();
  int end = nfa.Build(body, start);
  if (nfa.overflow) {
    return Status::InvalidArgument("grammar too large: rule '" + name + "' needs more than " +
                                   std::to_string(limits.max_nfa_states) + " NFA states");
  }
  KILN_RETURN_IF_ERROR(budget.Check());
  KILN_RETURN_IF_ERROR(Determinize(nfa, start, end, limits.max_dfa_states, budget, dfa));
  return Minimize(budget, dfa);
}

// A counted rule's DFA: its body's DFA × the DFA of all JSON string literals, whose transitions
// out of the "between characters" state start a character. Only pairs reachable from the start.
Status CountedProduct(const RuleDfa& body, const std::string& name, const AutomatonLimits& limits,
                      const Budget& budget, RuleDfa* out) {
  for (const auto& calls : body.calls) {
    if (!calls.empty()) {
      return Status::InvalidArgument("counted rule '" + name + "' calls another rule");
    }
  }
  static const RuleDfa* const kString = [] {
    auto* d = new RuleDfa;
    Status st = BuildRuleDfa(Seq({Literal("\""), Star(JsonStringChar()), Literal("\"")}), "string",
                             AutomatonLimits{}, Budget(1e9), d);
    (void)st;
    return d;
  }();
  const RuleDfa& str = *kString;
  const int between = str.next[0]['"'];  // after the opening quote = between characters
  std::map<std::pair<int, int>, int> ids;
  std::vector<std::pair<int, int>> pairs;
  auto intern = [&](int a, int b) {
    auto [it, inserted] = ids.try_emplace({a, b}, static_cast<int>(pairs.size()));
    if (inserted) pairs.push_back({a, b});
    return it->second;
  };
  intern(0, 0);
  for (size_t i = 0; i < pairs.size(); ++i) {
    if (static_cast<int>(pairs.size()) > limits.max_dfa_states) {
      return Status::InvalidArgument("grammar too large: rule '" + name + "' needs more than " +
                                     std::to_string(limits.max_dfa_states) + " automaton states");
    }
    if (i % 64 == 63) KILN_RETURN_IF_ERROR(budget.Check());
    const auto [a, b] = pairs[i];
    std::vector<int32_t> row(256, -1);
    std::bitset<256> starts;
    for (int c = 0; c < 256; ++c) {
      const int ta = body.next[a][c], tb = str.next[b][c];
      if (ta < 0 || tb < 0) continue;
      row[c] = intern(ta, tb);
      if (b == between && c != '"') starts.set(c);
    }
    out->next.push_back(std::move(row));
    out->is_final.push_back(body.is_final[a] && str.is_final[b] ? 1 : 0);
    out->calls.emplace_back();
    out->starts_char.push_back(starts);
  }
  return Status::Ok();
}

// States from which a final state is reachable (over bytes and the calls kept).
std::vector<char> LiveStates(const RuleDfa& d) {
  const int n = static_cast<int>(d.next.size());
  std::vector<std::vector<int>> preds(n);
  for (int s = 0; s < n; ++s) {
    for (int b = 0; b < 256; ++b) {
      if (d.next[s][b] >= 0) preds[d.next[s][b]].push_back(s);
    }
    for (const auto& c : d.calls[s]) preds[c.return_state].push_back(s);
  }
  std::vector<char> live(n, 0);
  std::vector<int> stack;
  for (int s = 0; s < n; ++s) {
    if (d.is_final[s]) {
      live[s] = 1;
      stack.push_back(s);
    }
  }
  while (!stack.empty()) {
    int s = stack.back();
    stack.pop_back();
    for (int p : preds[s]) {
      if (!live[p]) {
        live[p] = 1;
        stack.push_back(p);
      }
    }
  }
  return live;
}

// Counter::viable of a counted rule. R(q) = the character counts that can still be added from q
// to an end (capped: past cap dropped when bounded, saturated into cap when not), by a backward
// search over (state, count) pairs; count c is viable at q when c + r is within bounds for some
// r in R(q). O(states × cap).
Status ComputeViable(const RuleDfa& d, const std::vector<char>& live, const Budget& budget,
                     Automaton::Counter* k) {
  const int n = static_cast<int>(d.next.size());
  const int cap = k->cap;
  const bool bounded = k->max_chars >= 0;
  // Distinct (source, starts a character) predecessors per state.
  std::vector<std::vector<std::pair<int, int>>> preds(n);
  for (int s = 0; s < n; ++s) {
    if (!live[s]) continue;
    for (int b = 0; b < 256; ++b) {
      const int t = d.next[s][b];
      if (t >= 0 && live[t]) preds[t].push_back({s, d.starts_char[s].test(b) ? 1 : 0});
    }
  }
  for (auto& p : preds) {
    std::sort(p.begin(), p.end());
    p.erase(std::unique(p.begin(), p.end()), p.end());
  }
  const size_t row = static_cast<size_t>(cap) + 1;
  std::vector<char> reach(static_cast<size_t>(n) * row, 0);
  std::vector<std::pair<int, int>> queue;
  for (int s = 0; s < n; ++s) {
    if (live[s] && d.is_final[s]) {
      reach[s * row] = 1;
      queue.push_back({s, 0});
    }
  }
  for (size_t i = 0; i < queue.size(); ++i) {
    if (i % 65536 == 65535) KILN_RETURN_IF_ERROR(budget.Check());
    const auto [q, r] = queue[i];
    for (const auto& [p, inc] : preds[q]) {
      int r2 = r + inc;
      if (r2 > cap) {
        if (bounded) continue;
        r2 = cap;
      }
      char& seen = reach[p * row + r2];
      if (!seen) {
        seen = 1;
        queue.push_back({p, r2});
      }
    }
  }
  k->viable.assign(static_cast<size_t>(n) * k->words, 0);
  std::vector<int> next_at(row + 1);
  for (int s = 0; s < n; ++s) {
    // next_at[x] = the smallest r >= x in R(s), or cap + 1.
    next_at[row] = cap + 1;
    for (int x = cap; x >= 0; --x) next_at[x] = reach[s * row + x] ? x : next_at[x + 1];
    for (int c = 0; c <= cap; ++c) {
      const int r = next_at[std::max(0, k->min_chars - c)];
      const bool ok = r <= cap && (!bounded || c + r <= k->max_chars);
      if (ok) k->viable[static_cast<size_t>(s) * k->words + (c >> 6)] |= uint64_t{1} << (c & 63);
    }
  }
  return Status::Ok();
}

}  // namespace

StatusOr<Automaton> BuildAutomaton(const Grammar& grammar, const AutomatonLimits& limits) {
  const int num_rules = static_cast<int>(grammar.rules.size());
  if (grammar.root < 0 || grammar.root >= num_rules) {
    return Status::InvalidArgument("grammar has no root rule");
  }
  const Budget budget(limits.max_build_ms);
  std::vector<RuleDfa> dfas(num_rules);
  for (int r = 0; r < num_rules; ++r) {
    const Rule& rule = grammar.rules[r];
    if (!rule.body) return Status::InvalidArgument("rule '" + rule.name + "' is not defined");
    KILN_RETURN_IF_ERROR(BuildRuleDfa(rule.body, rule.name, limits, budget, &dfas[r]));
    for (const auto& calls : dfas[r].calls) {
      for (const auto& ce : calls) {
        if (ce.rule < 0 || ce.rule >= num_rules) {
          return Status::InvalidArgument("rule '" + rule.name + "' refers to an unknown rule");
        }
      }
    }
    if (rule.counted) {
      if (rule.min_chars < 0 || (rule.max_chars >= 0 && rule.max_chars < rule.min_chars)) {
        return Status::InvalidArgument("rule '" + rule.name + "' has invalid character bounds");
      }
      RuleDfa product;
      KILN_RETURN_IF_ERROR(CountedProduct(dfas[r], rule.name, limits, budget, &product));
      dfas[r] = std::move(product);
    }
  }

  // Productive rules: some path start → final over bytes and calls to productive rules.
  std::vector<char> productive(num_rules, 0);
  // Counted rules are leaves: productive when a count of 0 at the start can end in bounds.
  std::vector<Automaton::Counter> counters(num_rules);
  for (int r = 0; r < num_rules; ++r) {
    const Rule& rule = grammar.rules[r];
    if (!rule.counted) continue;
    Automaton::Counter& k = counters[r];
    k.min_chars = rule.min_chars;
    k.max_chars = rule.max_chars;
    k.cap = rule.max_chars >= 0 ? rule.max_chars : rule.min_chars;
    k.words = k.cap / 64 + 1;
    const std::vector<char> live = LiveStates(dfas[r]);
    KILN_RETURN_IF_ERROR(ComputeViable(dfas[r], live, budget, &k));
    productive[r] = live[0] && (k.viable[0] & 1);
  }
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
      if (grammar.rules[r].counted) continue;  // below, once its counts are known
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
    live[r] = LiveStates(d);
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
  a.counter_of.assign(num_rules, -1);
  a.starts_char.assign(static_cast<size_t>(count) * 4, 0);
  for (int r = 0; r < num_rules; ++r) {
    if (!grammar.rules[r].counted) continue;
    Automaton::Counter k = counters[r];
    const size_t words = static_cast<size_t>(k.words);
    k.viable.assign(static_cast<size_t>(a.rule_state_begin[r + 1] - a.rule_state_begin[r]) * words,
                    0);
    for (size_t s = 0; s < dfas[r].next.size(); ++s) {
      const int32_t g = global[r][s];
      if (g < 0) continue;
      const size_t local = static_cast<size_t>(g - a.rule_state_begin[r]);
      std::copy_n(&counters[r].viable[s * words], words, &k.viable[local * words]);
      for (int b = 0; b < 256; ++b) {
        if (dfas[r].starts_char[s].test(b)) {
          a.starts_char[static_cast<size_t>(g) * 4 + (b >> 6)] |= uint64_t{1} << (b & 63);
        }
      }
    }
    a.counter_of[r] = static_cast<int32_t>(a.counters.size());
    a.counters.push_back(std::move(k));
  }
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
  return a;
}

}  // namespace kiln::structured
