#include "tokenizer/vocab_builder.h"

#include <cstdio>

#include "tokenizer/byte_level.h"

namespace kiln::tokenizer {

StringIdMap PieceIds(const std::vector<std::string>& pieces,
                     const std::vector<uint8_t>& mergeable) {
  StringIdMap ids;
  ids.reserve(pieces.size());
  for (size_t id = 0; id < pieces.size(); ++id) {
    if (mergeable[id]) ids.emplace(pieces[id], static_cast<int32_t>(id));
  }
  return ids;
}

StringIdMap ModelSpaceVocab(const StringIdMap& piece_ids, bool byte_level) {
  if (!byte_level) return piece_ids;
  StringIdMap vocab;
  vocab.reserve(piece_ids.size());
  std::string bytes;
  for (const auto& [piece, id] : piece_ids) {
    if (ByteLevelToBytes(piece, &bytes)) vocab.emplace(bytes, id);
  }
  return vocab;
}

Status SplitMergeString(const std::string& merge, std::pair<std::string, std::string>* pair) {
  const size_t space = merge.find(' ');
  if (space == std::string::npos || space == 0 || space + 1 >= merge.size() ||
      merge.find(' ', space + 1) != std::string::npos) {
    return Status::DataLoss("merge '" + merge + "' is not of the form 'a b'");
  }
  *pair = {merge.substr(0, space), merge.substr(space + 1)};
  return Status::Ok();
}

StatusOr<std::vector<BpeMerge>> MergesFromPairs(
    const std::vector<std::pair<std::string, std::string>>& pairs, const StringIdMap& piece_ids) {
  std::vector<BpeMerge> merges;
  merges.reserve(pairs.size());
  std::string joined;
  for (size_t rank = 0; rank < pairs.size(); ++rank) {
    const auto& [a, b] = pairs[rank];
    auto left = piece_ids.find(a);
    auto right = piece_ids.find(b);
    joined = a + b;
    auto result = piece_ids.find(joined);
    if (left == piece_ids.end() || right == piece_ids.end() || result == piece_ids.end()) {
      return Status::DataLoss("merge " + std::to_string(rank) + " ('" + a + "' '" + b +
                              "') uses a piece that is not in the vocabulary");
    }
    merges.push_back({left->second, right->second, result->second, static_cast<int32_t>(rank)});
  }
  return merges;
}

std::array<int32_t, 256> ByteFallbackIds(const StringIdMap& piece_ids) {
  std::array<int32_t, 256> ids;
  char name[8];
  for (int b = 0; b < 256; ++b) {
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    auto it = piece_ids.find(std::string_view(name));
    ids[b] = it == piece_ids.end() ? -1 : it->second;
  }
  return ids;
}

}  // namespace kiln::tokenizer
