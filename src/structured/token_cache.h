// Context-independent token classification, precomputed per automaton state (the heart of fast
// masks). For a frame sitting on state s (of rule R), each vocabulary token is:
//  - accepted: its bytes can be consumed entirely while R (with whatever it calls) is still on the
//    stack, or R completes exactly at the token's end. Allowed whatever lies below the frame.
//  - uncertain: R can complete after a proper prefix token[0:k] (k >= 1) — the rest, token[k:],
//    must be consumed by the caller; which callers accept it is known only at run time. Stored as
//    a trie of (suffix token[k:], token id) for every such k.
//  - rejected: neither.
// Tokens R could hand over before consuming anything (s final) are the caller's business: the
// matcher's config already holds the caller's frames separately.
//
// A state of a counted rule (automaton.h Counter) is classified once for every count: its tables
// record per token the characters it adds and the state it ends in, and the matcher keeps the
// tokens whose resulting count is viable (CountedAllowed).
//
// Thread-safety: TokenEntry is immutable after ComputeTokenEntry; share freely.
#pragma once

#include <cstdint>
#include <vector>

#include "structured/automaton.h"
#include "structured/byte_trie.h"
#include "structured/vocab_index.h"

namespace kiln::structured {

struct TokenEntry {
  // Exactly one representation is used: sorted ids when few, else a bitmask of
  // ceil(vocab/32) words (bit i of word i/32 = token i).
  std::vector<int32_t> accepted_ids;
  std::vector<uint32_t> accepted_bits;
  int32_t num_accepted = 0;
  int32_t num_uncertain = 0;  // (token, k) pairs
  ByteTrie uncertain;         // suffixes token[k:], tag = token id (counted: index into below)

  // Counted rules only. accepted_* hold every token accepted at some count; `runs` group them by
  // (end state, characters added), ids in run_ids[begin, end).
  struct Run {
    int32_t end_local;  // end state, local to the rule
    int32_t chars;
    int32_t begin, end;
  };
  bool counted = false;
  std::vector<Run> runs;
  std::vector<int32_t> run_ids;
  struct Pending {  // an uncertain (token, k): the rule ends after token[0:k]
    int32_t id;
    int32_t chars;      // characters in token[0:k]
    int32_t end_local;  // the final state reached at k
  };
  std::vector<Pending> pending;  // [uncertain tag]

  size_t MemoryBytes() const {
    return accepted_ids.size() * 4 + accepted_bits.size() * 4 + uncertain.MemoryBytes() +
           runs.size() * sizeof(Run) + run_ids.size() * 4 + pending.size() * sizeof(Pending);
  }
};

// OR into `bitmask` the tokens of counted `entry` allowed on a frame of `state` with `count`
// characters; `scratch` holds ceil(vocab/32) words.
void OrCountedAllowed(const Automaton& automaton, const TokenEntry& entry, int32_t state,
                      int32_t count, std::vector<uint32_t>* scratch, uint32_t* bitmask);

// Classifies every token of `vocab` for a frame on `state` (which must have byte transitions).
TokenEntry ComputeTokenEntry(const Automaton& automaton, const VocabIndex& vocab, int32_t state);

}  // namespace kiln::structured
