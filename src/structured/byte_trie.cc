#include "structured/byte_trie.h"

#include <algorithm>

namespace kiln::structured {

void ByteTrie::Build(std::vector<std::pair<std::string, int32_t>> entries) {
  std::sort(entries.begin(), entries.end());
  nodes_.clear();
  tags_.clear();
  tags_.reserve(entries.size());
  for (const auto& e : entries) tags_.push_back(e.second);
  BuildRec(entries, 0, static_cast<int32_t>(entries.size()), 0, 0);
}

// Recursion depth = longest string (token bytes: at most a few hundred).
void ByteTrie::BuildRec(const std::vector<std::pair<std::string, int32_t>>& entries, int32_t lo,
                        int32_t hi, size_t depth, uint8_t byte) {
  const int32_t id = static_cast<int32_t>(nodes_.size());
  nodes_.push_back(Node{});
  int32_t i = lo;
  while (i < hi && entries[i].first.size() == depth) ++i;
  nodes_[id].byte = byte;
  nodes_[id].sub_begin = lo;
  nodes_[id].sub_end = hi;
  nodes_[id].num_ending = i - lo;
  while (i < hi) {
    uint8_t b = static_cast<uint8_t>(entries[i].first[depth]);
    int32_t j = i;
    while (j < hi && static_cast<uint8_t>(entries[j].first[depth]) == b) ++j;
    BuildRec(entries, i, j, depth + 1, b);
    i = j;
  }
  nodes_[id].end = static_cast<int32_t>(nodes_.size());
}

}  // namespace kiln::structured
