// BpeModel: the BPE "model" step of a tokenizer — one pre-tokenized word (in model space: raw
// bytes for byte-level vocabularies, normalized text with ▁ for SentencePiece-style ones) → ids.
//
// Algorithm: the word is cut into initial symbols (single bytes, or UTF-8 characters with byte
// fallback / unk), then the adjacent pair with the lowest merge rank is merged until none is left;
// equal ranks merge leftmost first. This is HF tokenizers' BPE (ranks = merges order) and also
// SentencePiece/llama.cpp BPE (rank = order of the merged piece's score). Short words use a linear
// scan, long ones (a whole SentencePiece text) a binary heap; the results are identical.
// Results of words up to kMaxCachedWordBytes are cached per thread.
//
// Thread-safety: immutable after construction; Encode may run on many threads (the word cache is
// thread_local, keyed by the model's serial number).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kiln::tokenizer {

// std::hash over string_view for heterogeneous lookup in unordered containers keyed by string.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringIdMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

struct BpeOptions {
  bool byte_units = false;     // initial symbols are single bytes (byte-level BPE)
  bool byte_fallback = false;  // an unknown character becomes its <0xXX> byte tokens
  int32_t unk_id = -1;         // an unknown symbol becomes this id (-1: it is dropped)
  bool fuse_unk = false;       // consecutive unknown symbols become one unk
  bool ignore_merges = false;  // a word that is itself in the vocabulary is that one token
};

struct BpeMerge {
  int32_t left;
  int32_t right;
  int32_t result;
  int32_t rank;  // lower merges first; equal ranks merge leftmost first
};

class BpeModel final {
 public:
  static constexpr size_t kMaxCachedWordBytes = 128;

  // `vocab`: model-space string → id. `merges`: any order (ranks given). `byte_fallback_ids[b]`:
  // id of the <0xXX> token for byte b, or -1.
  BpeModel(const BpeOptions& options, StringIdMap vocab, const std::vector<BpeMerge>& merges,
           const std::array<int32_t, 256>& byte_fallback_ids);
  BpeModel(const BpeModel&) = delete;
  BpeModel& operator=(const BpeModel&) = delete;

  // Appends the ids of `word` to *ids.
  void Encode(std::string_view word, std::vector<int32_t>* ids) const;
  // The same without the cache (tests and benchmarks compare the two).
  void EncodeUncached(std::string_view word, std::vector<int32_t>* ids) const;

  const StringIdMap& vocab() const { return vocab_; }

 private:
  struct MergeValue {
    int32_t rank;
    int32_t result;
  };
  // The merge of (left, right), or null: open addressing in merge_slots_.
  const MergeValue* FindMerge(int32_t left, int32_t right) const;
  void InitialSymbols(std::string_view word, std::vector<int32_t>* symbols) const;
  void MergeLinear(std::vector<int32_t>* symbols) const;
  void MergeHeap(std::vector<int32_t>* symbols) const;

  BpeOptions options_;
  StringIdMap vocab_;
  std::array<int32_t, 256> byte_ids_{};           // byte_units: id of each single byte
  std::array<int32_t, 256> byte_fallback_ids_{};  // <0xXX>
  std::array<int32_t, 128> ascii_ids_{};          // !byte_units: id of each ASCII char
  struct MergeSlot {
    uint64_t key;  // (left << 32) | right; all ones where free
    MergeValue value;
  };
  std::vector<MergeSlot> merge_slots_;  // open addressing, load factor <= 0.5
  uint64_t merge_mask_ = 0;
  uint64_t serial_ = 0;  // keys the per-thread word cache
};

}  // namespace kiln::tokenizer
