#include "structured/byte_trie.h"

#include <algorithm>
#include <deque>

namespace kiln::structured {

void ByteTrie::Build(std::vector<std::pair<std::string, int32_t>> entries) {
  std::sort(entries.begin(), entries.end());
  nodes_.clear();
  tags_.clear();
  tags_.reserve(entries.size());
  for (const auto& e : entries) tags_.push_back(e.second);

  struct Pending {
    int32_t node;
    int32_t lo, hi;
    size_t depth;
  };
  nodes_.push_back(Node{});
  std::deque<Pending> queue;
  queue.push_back({0, 0, static_cast<int32_t>(entries.size()), 0});
  while (!queue.empty()) {
    Pending p = queue.front();
    queue.pop_front();
    int32_t i = p.lo;
    while (i < p.hi && entries[i].first.size() == p.depth) ++i;
    Node& n = nodes_[p.node];
    n.sub_begin = p.lo;
    n.sub_end = p.hi;
    n.num_ending = i - p.lo;
    n.first_child = static_cast<int32_t>(nodes_.size());
    int32_t num_children = 0;
    std::vector<Pending> children;
    while (i < p.hi) {
      uint8_t b = static_cast<uint8_t>(entries[i].first[p.depth]);
      int32_t j = i;
      while (j < p.hi && static_cast<uint8_t>(entries[j].first[p.depth]) == b) ++j;
      children.push_back({0, i, j, p.depth + 1});
      i = j;
      ++num_children;
    }
    nodes_[p.node].num_children = num_children;
    for (auto& c : children) {
      c.node = static_cast<int32_t>(nodes_.size());
      Node child;
      child.byte = static_cast<uint8_t>(entries[c.lo].first[p.depth]);
      nodes_.push_back(child);
      queue.push_back(c);
    }
  }
}

}  // namespace kiln::structured
