#include "kv/kv_cache_manager.h"

#include "common/check.h"

namespace kiln {

KvCacheManager::KvCacheManager(const KvCacheOptions& options)
    : pool_(options.num_blocks, options.block_size, options.enable_prefix_caching),
      enable_prefix_caching_(options.enable_prefix_caching) {}

const BlockHash& KvCacheManager::HashOfBlock(KvSequence* seq, std::span<const int32_t> token_ids,
                                             size_t i) {
  const size_t bs = static_cast<size_t>(pool_.block_size());
  while (seq->block_hashes.size() <= i) {
    const size_t j = seq->block_hashes.size();
    const BlockHash parent = j == 0 ? RootBlockHash(seq->extra_keys) : seq->block_hashes[j - 1];
    seq->block_hashes.push_back(ChainBlockHash(parent, token_ids.subspan(j * bs, bs)));
  }
  return seq->block_hashes[i];
}

int KvCacheManager::FindCachedPrefix(KvSequence* seq, std::span<const int32_t> token_ids,
                                     std::vector<int32_t>* blocks) {
  KILN_CHECK(seq->block_table.empty()) << "prefix lookup for a sequence that holds blocks";
  blocks->clear();
  if (!enable_prefix_caching_ || token_ids.empty()) return 0;
  const size_t bs = static_cast<size_t>(pool_.block_size());
  const size_t max_blocks = (token_ids.size() - 1) / bs;
  int32_t parent = -1;
  for (size_t i = 0; i < max_blocks; ++i) {
    const BlockHash& h = HashOfBlock(seq, token_ids, i);
    const int32_t id = pool_.Find(h, token_ids.subspan(i * bs, bs), parent, seq->extra_keys);
    if (id < 0) break;
    blocks->push_back(id);
    parent = id;
  }
  return static_cast<int>(blocks->size() * bs);
}

bool KvCacheManager::AllocateSlots(KvSequence* seq, int num_computed_tokens, int num_new_tokens,
                                   std::span<const int32_t> cached_blocks) {
  int64_t num_revived = 0;
  if (!cached_blocks.empty()) {
    KILN_CHECK(seq->block_table.empty()) << "cached blocks for a sequence that holds blocks";
    KILN_CHECK_EQ(static_cast<int64_t>(cached_blocks.size()) * pool_.block_size(),
                  num_computed_tokens);
    for (int32_t id : cached_blocks) {
      if (pool_.block(id).ref_count == 0) ++num_revived;
    }
  }
  const int64_t have = static_cast<int64_t>(seq->block_table.size() + cached_blocks.size());
  const int64_t need = BlocksFor(int64_t{num_computed_tokens} + num_new_tokens) - have;
  if (need > pool_.num_free_blocks() - num_revived) return false;
  for (int32_t id : cached_blocks) {
    pool_.Ref(id);
    seq->block_table.push_back(id);
  }
  if (!cached_blocks.empty()) seq->num_registered_blocks = static_cast<int>(cached_blocks.size());
  if (need > 0) KILN_CHECK(pool_.Allocate(need, &seq->block_table));
  return true;
}

void KvCacheManager::CacheComputedBlocks(KvSequence* seq, std::span<const int32_t> token_ids,
                                         int num_computed_tokens) {
  if (!enable_prefix_caching_) return;
  const size_t bs = static_cast<size_t>(pool_.block_size());
  const size_t num_full = static_cast<size_t>(num_computed_tokens) / bs;
  KILN_CHECK_LE(num_full, seq->block_table.size());
  for (size_t i = static_cast<size_t>(seq->num_registered_blocks); i < num_full; ++i) {
    const BlockHash& h = HashOfBlock(seq, token_ids, i);
    pool_.Cache(seq->block_table[i], h, token_ids.subspan(i * bs, bs),
                i == 0 ? -1 : seq->block_table[i - 1], seq->extra_keys);
  }
  if (num_full > static_cast<size_t>(seq->num_registered_blocks)) {
    seq->num_registered_blocks = static_cast<int>(num_full);
  }
}

void KvCacheManager::Free(KvSequence* seq) {
  for (auto it = seq->block_table.rbegin(); it != seq->block_table.rend(); ++it) pool_.Unref(*it);
  seq->block_table.clear();
  seq->num_registered_blocks = 0;
}

Status KvCacheManager::CheckInvariants(std::span<const KvSequence* const> live) const {
  KILN_RETURN_IF_ERROR(pool_.CheckInvariants());
  scratch_refs_.assign(static_cast<size_t>(pool_.num_blocks()), 0);
  for (const KvSequence* seq : live) {
    for (int32_t id : seq->block_table) {
      if (id < 0 || id >= pool_.num_blocks()) {
        return Status::Internal("KvCacheManager: block id " + std::to_string(id) + " out of range");
      }
      ++scratch_refs_[static_cast<size_t>(id)];
    }
  }
  for (int64_t id = 0; id < pool_.num_blocks(); ++id) {
    const int32_t expected = scratch_refs_[static_cast<size_t>(id)];
    const int32_t actual = pool_.block(static_cast<int32_t>(id)).ref_count;
    if (expected != actual) {
      return Status::Internal("KvCacheManager: block " + std::to_string(id) + " ref_count " +
                              std::to_string(actual) + " but " + std::to_string(expected) +
                              " block tables hold it");
    }
  }
  return Status::Ok();
}

}  // namespace kiln
