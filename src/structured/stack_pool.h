// Runs the pushdown automaton (automaton.h) on bytes. A parse stack is a chain of hash-consed
// frames (StackPool node = (state, parent node, character count)); the count is that of a
// counted rule's frame (automaton.h Counter), 0 elsewhere, so equal stacks are equal node ids and
// stacks share their common bottoms. A Config is the set of stacks alive after some input: their
// top frames all sit on states with byte transitions ("byte-consuming" frames), plus a flag saying
// whether the input may end here because the bottom frame's rule completed.
//
// kBottom marks the end of a real parse stack (the root rule's return); kBase marks the end of a
// stack the token-cache precomputation starts inside a rule (popping it means "the rule ended").
// Both pop into Config::complete.
//
// Thread-safety: a StackPool belongs to one thread (a matcher, or one precomputation).
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "structured/automaton.h"

namespace kiln::structured {

inline constexpr int32_t kBottom = -1;
inline constexpr int32_t kBase = -2;

struct Config {
  std::vector<int32_t> nodes;  // byte-consuming frames, unique (order of discovery)
  bool complete = false;       // the bottom rule may end here
  bool viable() const { return complete || !nodes.empty(); }
  void Clear() {
    nodes.clear();
    complete = false;
  }
};

class StackPool final {
 public:
  explicit StackPool(const Automaton* automaton) : a_(automaton) {}
  StackPool(const StackPool&) = delete;
  StackPool& operator=(const StackPool&) = delete;

  struct Node {
    int32_t state;
    int32_t parent;  // node id, kBottom or kBase
    int32_t count;   // characters so far, counted rules only
  };

  int32_t Get(int32_t state, int32_t parent, int32_t count = 0) {
    const int32_t next_id = static_cast<int32_t>(nodes_.size());
    std::pair<decltype(index_)::iterator, bool> found;
    if (count == 0) {  // most frames: one 64-bit key
      found = index_.try_emplace((static_cast<uint64_t>(static_cast<uint32_t>(state)) << 32) |
                                     static_cast<uint32_t>(parent),
                                 next_id);
    } else {
      auto [it, inserted] = counted_index_.try_emplace(Key{state, parent, count}, next_id);
      if (!inserted) return it->second;
      found.second = true;
    }
    if (!found.second) return found.first->second;
    nodes_.push_back({state, parent, count});
    stamp_.push_back(0);
    return next_id;
  }
  const Node& node(int32_t id) const { return nodes_[id]; }
  size_t size() const { return nodes_.size(); }

  // Adds the byte-consuming frames reachable from `node` without consuming input (calls pushed,
  // completed rules popped) to `out`.
  void Close(int32_t node, Config* out) {
    NewEpoch();
    CloseRec(node, out);
  }

  // out = the configs reached from `in` by consuming `byte` (closed).
  void Advance(const Config& in, uint8_t byte, Config* out) {
    out->Clear();
    NewEpoch();
    for (int32_t n : in.nodes) {
      const Node nd = nodes_[n];
      int32_t t = a_->Next(nd.state, byte);
      if (t < 0) continue;
      int32_t count = 0;
      if (const Automaton::Counter* k = a_->CounterOf(t)) {
        count = a_->CountAfter(*k, nd.state, byte, t, nd.count);
        if (count < 0) continue;
      }
      CloseRec(Get(t, nd.parent, count), out);
    }
  }

 private:
  void NewEpoch() {
    if (++epoch_ == 0) {
      std::fill(stamp_.begin(), stamp_.end(), 0);
      epoch_ = 1;
    }
  }

  void CloseRec(int32_t n, Config* out) {
    if (stamp_[n] == epoch_) return;
    stamp_[n] = epoch_;
    const Node nd = nodes_[n];
    if (a_->has_bytes[nd.state]) out->nodes.push_back(n);
    for (const auto& call : a_->calls[nd.state]) {
      int32_t ret = Get(call.return_state, nd.parent);
      CloseRec(Get(a_->rule_start[call.rule], ret), out);
    }
    if (a_->is_final[nd.state]) {
      if (nd.parent < 0) {
        out->complete = true;
      } else {
        CloseRec(nd.parent, out);
      }
    }
  }

  struct Key {
    int32_t state, parent, count;
    bool operator==(const Key& o) const {
      return state == o.state && parent == o.parent && count == o.count;
    }
  };
  struct KeyHash {
    size_t operator()(const Key& k) const {
      uint64_t h = (static_cast<uint64_t>(static_cast<uint32_t>(k.state)) << 32 |
                    static_cast<uint32_t>(k.parent)) *
                   0x9E3779B97F4A7C15ull;
      return static_cast<size_t>((h ^ (h >> 31)) + static_cast<uint32_t>(k.count) * 0x85EBCA6Bu);
    }
  };

  const Automaton* a_;
  std::vector<Node> nodes_;
  std::vector<uint32_t> stamp_;
  uint32_t epoch_ = 0;
  std::unordered_map<uint64_t, int32_t> index_;              // frames with count 0
  std::unordered_map<Key, int32_t, KeyHash> counted_index_;  // frames with a count
};

}  // namespace kiln::structured
