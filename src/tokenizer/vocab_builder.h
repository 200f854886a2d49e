// Helpers shared by the two tokenizer sources (tokenizer.json and GGUF) to assemble a BpeModel
// from stored vocabulary strings: the model-space vocabulary (byte-level strings → raw bytes),
// merges given as string pairs, and the <0xXX> byte-fallback ids.
//
// Thread-safety: pure functions.
#pragma once

#include <array>
#include <string>
#include <utility>
#include <vector>

#include "kiln/status.h"
#include "tokenizer/bpe_model.h"

namespace kiln::tokenizer {

// Stored piece → id for the ids where mergeable[id] is set (the model's own vocabulary).
StringIdMap PieceIds(const std::vector<std::string>& pieces, const std::vector<uint8_t>& mergeable);

// The vocabulary in model space: for byte-level vocabularies each piece's raw bytes (pieces with
// characters outside the byte-level alphabet can never be produced and are left out).
StringIdMap ModelSpaceVocab(const StringIdMap& piece_ids, bool byte_level);

// Merges listed in rank order as (left, right) piece strings; the merged piece must exist.
StatusOr<std::vector<BpeMerge>> MergesFromPairs(
    const std::vector<std::pair<std::string, std::string>>& pairs, const StringIdMap& piece_ids);

// Splits "a b" (the string form of a merge) at its single space.
Status SplitMergeString(const std::string& merge, std::pair<std::string, std::string>* pair);

// ids of the "<0x00>".."<0xFF>" pieces (-1 where absent).
std::array<int32_t, 256> ByteFallbackIds(const StringIdMap& piece_ids);

}  // namespace kiln::tokenizer
