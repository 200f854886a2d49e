// A compact, immutable trie over byte strings with an int32 tag per string (a token id). Used for
// the whole vocabulary (tags = token ids, built once per model) and for the per-state tables of
// "uncertain" token suffixes (token_cache.h).
//
// Layout: nodes in depth-first preorder, so a walk reads memory sequentially. Node 0 is the root
// (empty prefix); the children of node u are u+1, end(u+1), end(end(u+1)), ... while < end(u)
// (ascending byte); skipping a subtree is a jump to end(c). Strings are stored sorted; the tags of
// the strings in a node's subtree are tags()[sub_begin, sub_end), and those ending exactly at the
// node come first: tags()[sub_begin, sub_begin + num_ending).
//
// Thread-safety: immutable after Build; share freely.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace kiln::structured {

class ByteTrie final {
 public:
  struct Node {
    int32_t end = 0;  // one past the last node of this subtree
    int32_t sub_begin = 0;
    int32_t sub_end = 0;
    int32_t num_ending = 0;
    uint8_t byte = 0;
  };

  // `entries` need not be sorted; duplicates (same string and tag) are kept.
  void Build(std::vector<std::pair<std::string, int32_t>> entries);

  const std::vector<Node>& nodes() const { return nodes_; }
  const std::vector<int32_t>& tags() const { return tags_; }
  bool empty() const { return tags_.empty(); }
  size_t MemoryBytes() const { return nodes_.size() * sizeof(Node) + tags_.size() * 4; }

 private:
  void BuildRec(const std::vector<std::pair<std::string, int32_t>>& entries, int32_t lo, int32_t hi,
                size_t depth, uint8_t byte);

  std::vector<Node> nodes_;
  std::vector<int32_t> tags_;
};

}  // namespace kiln::structured
