// The pushdown automaton a Grammar compiles to: every rule becomes a DFA whose edges consume one
// byte or call another rule; all rules' states are numbered in one flat space. A parse position is
// a stack of (state, return-to) frames; stack_pool.h runs it.
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

  int32_t Next(int32_t state, uint8_t byte) const { return next[state * 256 + byte]; }
};

struct AutomatonLimits {
  int max_nfa_states = 400000;
  int max_dfa_states = 20000;  // bounds compile time: every state gets a token table
};

// InvalidArgument when the grammar is empty, left-recursive or too large.
StatusOr<Automaton> BuildAutomaton(const Grammar& grammar, const AutomatonLimits& limits = {});

}  // namespace kiln::structured
