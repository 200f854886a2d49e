// The pushdown automaton a Grammar compiles to: every rule becomes a DFA whose edges consume one
// byte or call another rule; all rules' states are numbered in one flat space. A parse position is
// a stack of (state, return-to) frames; stack_pool.h runs it.
//
// Counted rules (Rule::counted) keep one DFA state per position in a JSON string, not per count:
// a frame on such a rule carries its character count, transitions that start a character add one
// (starts_char), and a count is kept only while the rule can still end within its bounds from
// there (Counter::viable), so a length bound costs no states.
//
// Invariants after BuildAutomaton succeeds: every rule derives at least one finite string; every
// kept state can reach a final state of its rule (dead states and calls to empty rules are
// removed), so every viable prefix can be completed; no rule can call itself without consuming a
// byte first (left recursion is rejected), so closures terminate.
//
// Thread-safety: immutable after construction.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "kiln/status.h"
#include "structured/grammar.h"

namespace kiln::structured {

struct Automaton {
  struct Call {
    int32_t rule;
    int32_t return_state;  // state of the caller after the callee completes
  };
  int32_t num_states = 0;
  std::vector<int32_t> next;              // [num_states * 256]: byte transition target, -1 = none
  std::vector<uint8_t> is_final;          // [num_states]: the rule may end here
  std::vector<uint8_t> has_bytes;         // [num_states]: some byte transition exists
  std::vector<int32_t> rule_of;           // [num_states]
  std::vector<std::vector<Call>> calls;   // [num_states]
  std::vector<int32_t> rule_start;        // [num_rules]
  std::vector<int32_t> rule_state_begin;  // [num_rules + 1]: a rule's states are contiguous
  std::vector<uint8_t> rule_has_calls;    // [num_rules]: some state of the rule calls a rule
  int32_t root_rule = 0;

  // Character-count bounds of a counted rule. Counts live in [0, cap]: cap = max_chars when
  // bounded (a count past it is dead), else min_chars (counts saturate there).
  struct Counter {
    int32_t min_chars = 0;
    int32_t max_chars = -1;
    int32_t cap = 0;
    int32_t words = 0;             // 64-bit words per bitset (cap / 64 + 1)
    std::vector<uint64_t> viable;  // [rule states][words]: bit n = the rule can end in bounds
                                   // from (state, count n)
  };
  std::vector<int32_t> counter_of;  // [num_rules]: index into counters, -1 = not counted
  std::vector<Counter> counters;
  std::vector<uint64_t> starts_char;  // [num_states * 4]: bit b = the transition on b starts a
                                      // character (counted rules only)

  int32_t Next(int32_t state, uint8_t byte) const { return next[state * 256 + byte]; }
  bool StartsChar(int32_t state, uint8_t byte) const {
    return starts_char[static_cast<size_t>(state) * 4 + (byte >> 6)] >> (byte & 63) & 1;
  }
  // Counter of `state`'s rule, null if the rule is not counted.
  const Counter* CounterOf(int32_t state) const {
    const int32_t c = counter_of[rule_of[state]];
    return c < 0 ? nullptr : &counters[c];
  }
  // Whether a frame on `state` (of a counted rule with counter `k`) with `count` characters
  // (possibly past cap) can still end within the bounds.
  bool Viable(const Counter& k, int32_t state, int64_t count) const {
    if (count > k.cap) {
      if (k.max_chars >= 0) return false;
      count = k.cap;
    }
    const size_t local = static_cast<size_t>(state - rule_state_begin[rule_of[state]]);
    return k.viable[local * k.words + (count >> 6)] >> (count & 63) & 1;
  }
  // The count after the transition state --byte--> target from `count`; -1 when not viable.
  int32_t CountAfter(const Counter& k, int32_t state, uint8_t byte, int32_t target,
                     int32_t count) const {
    int32_t n = count + (StartsChar(state, byte) ? 1 : 0);
    if (n > k.cap) {
      if (k.max_chars >= 0) return -1;
      n = k.cap;
    }
    return Viable(k, target, n) ? n : -1;
  }
};

struct AutomatonLimits {
  int max_nfa_states = 400000;
  int max_dfa_states = 20000;  // bounds memory and the work of lazy token tables
  // Thread CPU time the whole build may take (a regex such as (a{60}){61} determinizes and
  // minimizes thousands of states); past it the build stops with InvalidArgument.
  double max_build_ms = 500;
};

// InvalidArgument when the grammar is empty, left-recursive, too large or too slow to build.
StatusOr<Automaton> BuildAutomaton(const Grammar& grammar, const AutomatonLimits& limits = {});

}  // namespace kiln::structured
