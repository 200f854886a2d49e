#include "kv/block_pool.h"

#include <algorithm>
#include <cstring>

#include "common/check.h"

namespace kiln {

BlockPool::BlockPool(int64_t num_blocks, int block_size, bool enable_caching)
    : block_size_(block_size), enable_caching_(enable_caching) {
  KILN_CHECK_GT(num_blocks, 0);
  KILN_CHECK_LT(num_blocks, int64_t{1} << 31);
  KILN_CHECK_GT(block_size, 0);
  blocks_.resize(static_cast<size_t>(num_blocks));
  if (enable_caching_) {
    token_ids_.resize(static_cast<size_t>(num_blocks) * static_cast<size_t>(block_size));
    index_.reserve(static_cast<size_t>(num_blocks));
  }
  for (int64_t i = 0; i < num_blocks; ++i) {
    blocks_[static_cast<size_t>(i)].block_id = static_cast<int32_t>(i);
    PushBack(static_cast<int32_t>(i));
  }
}

void BlockPool::PushFront(int32_t id) {
  KvBlock& b = blocks_[static_cast<size_t>(id)];
  b.prev_free = -1;
  b.next_free = free_head_;
  if (free_head_ >= 0) blocks_[static_cast<size_t>(free_head_)].prev_free = id;
  free_head_ = id;
  if (free_tail_ < 0) free_tail_ = id;
  b.in_free_list = true;
  ++num_free_;
  if (b.is_cached) ++num_cached_free_;
}

void BlockPool::PushBack(int32_t id) {
  KvBlock& b = blocks_[static_cast<size_t>(id)];
  b.next_free = -1;
  b.prev_free = free_tail_;
  if (free_tail_ >= 0) blocks_[static_cast<size_t>(free_tail_)].next_free = id;
  free_tail_ = id;
  if (free_head_ < 0) free_head_ = id;
  b.in_free_list = true;
  ++num_free_;
  if (b.is_cached) ++num_cached_free_;
}

void BlockPool::Unlink(int32_t id) {
  KvBlock& b = blocks_[static_cast<size_t>(id)];
  KILN_DCHECK(b.in_free_list);
  if (b.prev_free >= 0) {
    blocks_[static_cast<size_t>(b.prev_free)].next_free = b.next_free;
  } else {
    free_head_ = b.next_free;
  }
  if (b.next_free >= 0) {
    blocks_[static_cast<size_t>(b.next_free)].prev_free = b.prev_free;
  } else {
    free_tail_ = b.prev_free;
  }
  b.prev_free = b.next_free = -1;
  b.in_free_list = false;
  --num_free_;
  if (b.is_cached) --num_cached_free_;
}

void BlockPool::Uncache(KvBlock& b) {
  auto it = index_.find(b.hash);
  KILN_CHECK(it != index_.end() && it->second == b.block_id) << "index out of sync";
  index_.erase(it);
  b.is_cached = false;
  b.parent_hash = BlockHash{};
}

bool BlockPool::Allocate(int64_t n, std::vector<int32_t>* out) {
  if (n > num_free_) return false;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t id = free_head_;
    Unlink(id);
    KvBlock& b = blocks_[static_cast<size_t>(id)];
    if (b.is_cached) {
      Uncache(b);
      ++num_evictions_;
    }
    b.ref_count = 1;
    out->push_back(id);
  }
  return true;
}

void BlockPool::Ref(int32_t block_id) {
  KvBlock& b = blocks_[static_cast<size_t>(block_id)];
  if (b.ref_count == 0) Unlink(block_id);
  ++b.ref_count;
}

void BlockPool::Unref(int32_t block_id) {
  KvBlock& b = blocks_[static_cast<size_t>(block_id)];
  KILN_CHECK_GT(b.ref_count, 0) << "block " << block_id << " freed twice";
  if (--b.ref_count == 0) {
    if (b.is_cached) {
      PushBack(block_id);
    } else {
      PushFront(block_id);
    }
  }
}

int32_t BlockPool::Find(const BlockHash& hash, std::span<const int32_t> token_ids,
                        const BlockHash& parent_hash) const {
  if (!enable_caching_ || static_cast<int>(token_ids.size()) != block_size_) return -1;
  auto it = index_.find(hash);
  if (it == index_.end()) return -1;
  const KvBlock& b = blocks_[static_cast<size_t>(it->second)];
  if (!(b.parent_hash == parent_hash)) return -1;
  const int32_t* stored = token_ids_.data() + static_cast<size_t>(b.block_id) * block_size_;
  if (std::memcmp(stored, token_ids.data(), sizeof(int32_t) * token_ids.size()) != 0) return -1;
  return b.block_id;
}

void BlockPool::Cache(int32_t block_id, const BlockHash& hash, std::span<const int32_t> token_ids,
                      const BlockHash& parent_hash) {
  if (!enable_caching_) return;
  KILN_CHECK_EQ(static_cast<int>(token_ids.size()), block_size_);
  KvBlock& b = blocks_[static_cast<size_t>(block_id)];
  KILN_CHECK_GT(b.ref_count, 0) << "caching a free block";
  if (b.is_cached) return;
  if (!index_.emplace(hash, block_id).second) return;  // an equal (or colliding) block is cached
  b.is_cached = true;
  b.hash = hash;
  b.parent_hash = parent_hash;
  std::copy(token_ids.begin(), token_ids.end(),
            token_ids_.begin() + static_cast<ptrdiff_t>(block_id) * block_size_);
}

Status BlockPool::CheckInvariants() const {
  auto fail = [](const std::string& m) { return Status::Internal("BlockPool: " + m); };
  int64_t listed = 0;
  int64_t cached_free = 0;
  int32_t prev = -1;
  for (int32_t id = free_head_; id >= 0; id = blocks_[static_cast<size_t>(id)].next_free) {
    const KvBlock& b = blocks_[static_cast<size_t>(id)];
    if (!b.in_free_list) return fail("block " + std::to_string(id) + " listed but not marked");
    if (b.ref_count != 0) return fail("free block " + std::to_string(id) + " has references");
    if (b.prev_free != prev) return fail("broken prev link at " + std::to_string(id));
    if (b.is_cached) ++cached_free;
    prev = id;
    if (++listed > num_blocks()) return fail("free list has a cycle");
  }
  if (prev != free_tail_) return fail("free tail mismatch");
  if (listed != num_free_) {
    return fail("free list length " + std::to_string(listed) + " != num_free " +
                std::to_string(num_free_));
  }
  if (cached_free != num_cached_free_) return fail("cached-free count mismatch");
  int64_t in_use = 0;
  int64_t cached = 0;
  for (const KvBlock& b : blocks_) {
    if (b.ref_count < 0) return fail("negative ref count");
    if (b.ref_count > 0) {
      ++in_use;
      if (b.in_free_list) return fail("in-use block in free list");
    } else if (!b.in_free_list) {
      return fail("free block " + std::to_string(b.block_id) + " not in free list");
    }
    if (b.is_cached) {
      ++cached;
      auto it = index_.find(b.hash);
      if (it == index_.end() || it->second != b.block_id) return fail("cached block not indexed");
    }
  }
  if (cached != static_cast<int64_t>(index_.size())) return fail("index size mismatch");
  // free-and-empty + in use + free-and-cached == total
  if ((num_free_ - num_cached_free_) + in_use + num_cached_free_ != num_blocks()) {
    return fail("accounting: free + in use + cached != total");
  }
  return Status::Ok();
}

}  // namespace kiln
