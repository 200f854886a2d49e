#include "kv/host_tier.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "common/check.h"

namespace kiln {

HostTier::HostTier(uint8_t* base, int64_t record_bytes, int64_t num_records, int block_size)
    : base_(base), record_bytes_(record_bytes), block_size_(block_size) {
  KILN_CHECK(base != nullptr);
  KILN_CHECK_GT(record_bytes, 0);
  KILN_CHECK_GT(num_records, 0);
  KILN_CHECK_GT(block_size, 0);
  const size_t n = static_cast<size_t>(num_records);
  pins_.assign(n, 0);
  published_.assign(n, false);
  keys_.resize(n);
  parents_.resize(n);
  token_ids_.assign(n * static_cast<size_t>(block_size), 0);
  prev_.assign(n, -1);
  next_.assign(n, -1);
  in_lru_.assign(n, false);
  free_.reserve(n);
  for (int64_t r = num_records - 1; r >= 0; --r) free_.push_back(r);
  index_.reserve(n);
}

void HostTier::LruUnlink(int64_t r) {
  const size_t i = static_cast<size_t>(r);
  KILN_DCHECK(in_lru_[i]);
  if (prev_[i] >= 0) {
    next_[static_cast<size_t>(prev_[i])] = next_[i];
  } else {
    lru_head_ = next_[i];
  }
  if (next_[i] >= 0) {
    prev_[static_cast<size_t>(next_[i])] = prev_[i];
  } else {
    lru_tail_ = prev_[i];
  }
  prev_[i] = next_[i] = -1;
  in_lru_[i] = false;
}

void HostTier::LruPushBack(int64_t r) {
  const size_t i = static_cast<size_t>(r);
  prev_[i] = lru_tail_;
  next_[i] = -1;
  if (lru_tail_ >= 0) next_[static_cast<size_t>(lru_tail_)] = r;
  lru_tail_ = r;
  if (lru_head_ < 0) lru_head_ = r;
  in_lru_[i] = true;
}

int64_t HostTier::Find(const BlockHash& key, std::span<const int32_t> token_ids,
                       const BlockHash& parent) const {
  if (static_cast<int>(token_ids.size()) != block_size_) return -1;
  auto it = index_.find(key);
  if (it == index_.end()) return -1;
  const size_t i = static_cast<size_t>(it->second);
  if (!(parents_[i] == parent)) return -1;
  const int32_t* stored = token_ids_.data() + i * static_cast<size_t>(block_size_);
  if (std::memcmp(stored, token_ids.data(), token_ids.size_bytes()) != 0) return -1;
  return it->second;
}

int64_t HostTier::Reserve() {
  int64_t r = -1;
  if (!free_.empty()) {
    r = free_.back();
    free_.pop_back();
  } else if (lru_head_ >= 0) {
    r = lru_head_;
    LruUnlink(r);
    const size_t i = static_cast<size_t>(r);
    index_.erase(keys_[i]);
    published_[i] = false;
    ++num_evictions_;
  } else {
    return -1;
  }
  pins_[static_cast<size_t>(r)] = 1;
  return r;
}

bool HostTier::Publish(int64_t r, const BlockHash& key, const BlockHash& parent,
                       std::span<const int32_t> token_ids) {
  const size_t i = static_cast<size_t>(r);
  KILN_CHECK_GT(pins_[i], 0) << "publishing an unpinned host record";
  KILN_CHECK(!published_[i]);
  KILN_CHECK_EQ(static_cast<int>(token_ids.size()), block_size_);
  if (!index_.emplace(key, r).second) return false;
  published_[i] = true;
  keys_[i] = key;
  parents_[i] = parent;
  std::copy(token_ids.begin(), token_ids.end(),
            token_ids_.begin() + static_cast<ptrdiff_t>(i) * block_size_);
  return true;
}

void HostTier::Pin(int64_t r) {
  const size_t i = static_cast<size_t>(r);
  if (pins_[i] == 0) {
    KILN_CHECK(published_[i]) << "pinning a free host record";
    LruUnlink(r);
  }
  ++pins_[i];
}

void HostTier::Unpin(int64_t r) {
  const size_t i = static_cast<size_t>(r);
  KILN_CHECK_GT(pins_[i], 0) << "host record " << r << " unpinned twice";
  if (--pins_[i] > 0) return;
  if (published_[i]) {
    LruPushBack(r);
  } else {
    free_.push_back(r);
  }
}

void HostTier::Touch(int64_t r) {
  if (!in_lru_[static_cast<size_t>(r)]) return;
  LruUnlink(r);
  LruPushBack(r);
}

Status HostTier::CheckInvariants() const {
  auto fail = [](const std::string& m) { return Status::Internal("HostTier: " + m); };
  const int64_t n = num_records();
  std::vector<int> seen(static_cast<size_t>(n), 0);
  int64_t prev = -1, listed = 0;
  for (int64_t r = lru_head_; r >= 0; r = next_[static_cast<size_t>(r)]) {
    const size_t i = static_cast<size_t>(r);
    if (!in_lru_[i] || pins_[i] != 0 || !published_[i]) return fail("bad LRU entry");
    if (prev_[i] != prev) return fail("broken LRU link");
    ++seen[i];
    prev = r;
    if (++listed > n) return fail("LRU cycle");
  }
  if (prev != lru_tail_) return fail("LRU tail mismatch");
  for (int64_t r : free_) {
    const size_t i = static_cast<size_t>(r);
    if (pins_[i] != 0 || published_[i]) return fail("bad free record");
    ++seen[i];
  }
  int64_t published = 0;
  for (int64_t r = 0; r < n; ++r) {
    const size_t i = static_cast<size_t>(r);
    if (pins_[i] < 0) return fail("negative pins");
    if (pins_[i] > 0) ++seen[i];
    if (seen[i] != 1)
      return fail("record " + std::to_string(r) + " in " + std::to_string(seen[i]) + " states");
    if (published_[i]) {
      ++published;
      auto it = index_.find(keys_[i]);
      if (it == index_.end() || it->second != r) return fail("published record not indexed");
    }
  }
  if (published != num_published()) return fail("index size mismatch");
  return Status::Ok();
}

}  // namespace kiln
