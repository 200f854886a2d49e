#include "structured/vocab_index.h"

#include <algorithm>

namespace kiln::structured {

StatusOr<std::shared_ptr<const VocabIndex>> VocabIndex::Build(const VocabInfo& info) {
  if (info.vocab_size <= 0 || static_cast<int>(info.token_bytes.size()) > info.vocab_size) {
    return Status::InvalidArgument("VocabInfo: vocab_size " + std::to_string(info.vocab_size) +
                                   " must be positive and >= token_bytes.size() " +
                                   std::to_string(info.token_bytes.size()));
  }
  auto index = std::make_shared<VocabIndex>();
  index->vocab_size_ = info.vocab_size;
  index->token_bytes_ = info.token_bytes;
  index->token_bytes_.resize(info.vocab_size);
  index->is_eos_.assign(info.vocab_size, 0);
  for (int32_t id : info.eos_token_ids) {
    if (id < 0 || id >= info.vocab_size) {
      return Status::InvalidArgument("VocabInfo: eos token id " + std::to_string(id) +
                                     " outside the vocabulary");
    }
    if (!index->is_eos_[id]) index->eos_token_ids_.push_back(id);
    index->is_eos_[id] = 1;
  }
  std::vector<std::pair<std::string, int32_t>> entries;
  entries.reserve(info.token_bytes.size());
  for (int32_t id = 0; id < static_cast<int32_t>(info.token_bytes.size()); ++id) {
    if (!info.token_bytes[id].empty() && !index->is_eos_[id]) {
      entries.emplace_back(info.token_bytes[id], id);
      index->max_token_bytes_ =
          std::max(index->max_token_bytes_, static_cast<int>(info.token_bytes[id].size()));
    }
  }
  index->trie_.Build(std::move(entries));
  return std::shared_ptr<const VocabIndex>(std::move(index));
}

}  // namespace kiln::structured
