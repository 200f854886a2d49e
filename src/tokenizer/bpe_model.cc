#include "tokenizer/bpe_model.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <climits>
#include <cstring>
#include <queue>

#include "tokenizer/utf8.h"

namespace kiln::tokenizer {
namespace {

constexpr uint64_t kEmptyKey = ~uint64_t{0};
constexpr int32_t kNoMerge = INT32_MAX;
constexpr size_t kLinearMergeMaxSymbols = 48;

uint64_t PairKey(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

uint64_t HashKey(uint64_t key) {
  key ^= key >> 29;
  key *= 0xBF58476D1CE4E5B9ull;
  key ^= key >> 32;
  return key;
}

std::atomic<uint64_t> g_next_serial{1};

// Hash of a short byte string: 8 bytes at a time, multiply-xorshift mixing.
uint64_t HashBytes(std::string_view s) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ s.size();
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t v;
    std::memcpy(&v, s.data() + i, 8);
    h = (h ^ v) * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 31;
  }
  if (i < s.size()) {
    uint64_t v = 0;
    std::memcpy(&v, s.data() + i, s.size() - i);
    h = (h ^ v) * 0x94D049BB133111EBull;
    h ^= h >> 29;
  }
  return h * 0xBF58476D1CE4E5B9ull;
}

// A per-thread cache of word → ids for one model: open addressing over slots that point into a
// key arena and an id arena. The whole cache is dropped when it is full (simple, and words recur
// quickly enough to refill it).
struct WordCache {
  static constexpr size_t kMaxWords = 1 << 15;
  static constexpr size_t kInitialSlots = 1 << 12;
  struct Slot {
    uint32_t hash = 0;
    uint32_t key_offset = 0;
    uint16_t key_size = 0;  // 0: empty (empty words are never cached)
    uint16_t num_ids = 0;
    uint32_t ids_offset = 0;
  };
  uint64_t owner = 0;
  size_t num_words = 0;
  std::vector<Slot> slots;  // power-of-two size, load factor <= 0.5
  std::string keys;
  std::vector<int32_t> ids;

  void Reset(uint64_t new_owner) {
    owner = new_owner;
    num_words = 0;
    slots.assign(kInitialSlots, Slot{});
    keys.clear();
    ids.clear();
  }
  // The slot holding `word`, or the empty slot where it would go.
  Slot* Find(std::string_view word, uint32_t hash) {
    const size_t mask = slots.size() - 1;
    size_t i = hash & mask;
    while (true) {
      Slot& slot = slots[i];
      if (slot.key_size == 0) return &slot;
      if (slot.hash == hash && slot.key_size == word.size() &&
          std::memcmp(keys.data() + slot.key_offset, word.data(), word.size()) == 0) {
        return &slot;
      }
      i = (i + 1) & mask;
    }
  }
  void Grow() {
    std::vector<Slot> old(slots.size() * 2);
    old.swap(slots);
    const size_t mask = slots.size() - 1;
    for (const Slot& slot : old) {
      if (slot.key_size == 0) continue;
      size_t i = slot.hash & mask;
      while (slots[i].key_size != 0) i = (i + 1) & mask;
      slots[i] = slot;
    }
  }
};

WordCache& CacheFor(uint64_t serial) {
  thread_local std::array<WordCache, 4> caches;
  thread_local size_t next_victim = 0;
  for (WordCache& cache : caches) {
    if (cache.owner == serial) return cache;
  }
  WordCache& victim = caches[next_victim];
  next_victim = (next_victim + 1) % caches.size();
  victim.Reset(serial);
  return victim;
}

// Per-thread scratch for the merge loops.
struct Scratch {
  std::vector<int32_t> symbols;
  std::vector<int32_t> ranks;
  std::vector<int32_t> results;
};

Scratch& GetScratch() {
  thread_local Scratch scratch;
  return scratch;
}

}  // namespace

BpeModel::BpeModel(const BpeOptions& options, StringIdMap vocab,
                   const std::vector<BpeMerge>& merges,
                   const std::array<int32_t, 256>& byte_fallback_ids)
    : options_(options), vocab_(std::move(vocab)), byte_fallback_ids_(byte_fallback_ids) {
  serial_ = g_next_serial.fetch_add(1);
  byte_ids_.fill(-1);
  ascii_ids_.fill(-1);
  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    auto it = vocab_.find(std::string_view(&c, 1));
    if (it == vocab_.end()) continue;
    if (options_.byte_units) byte_ids_[b] = it->second;
    if (b < 128) ascii_ids_[b] = it->second;
  }
  const size_t capacity = std::bit_ceil(std::max<size_t>(16, merges.size() * 2));
  merge_slots_.assign(capacity, MergeSlot{kEmptyKey, {kNoMerge, -1}});
  merge_mask_ = capacity - 1;
  for (const BpeMerge& m : merges) {
    const uint64_t key = PairKey(m.left, m.right);
    uint64_t slot = HashKey(key) & merge_mask_;
    while (merge_slots_[slot].key != kEmptyKey && merge_slots_[slot].key != key) {
      slot = (slot + 1) & merge_mask_;
    }
    // A pair listed twice keeps its best rank (HF keeps the first occurrence).
    if (merge_slots_[slot].key == key && merge_slots_[slot].value.rank <= m.rank) continue;
    merge_slots_[slot] = {key, {m.rank, m.result}};
  }
}

const BpeModel::MergeValue* BpeModel::FindMerge(int32_t left, int32_t right) const {
  const uint64_t key = PairKey(left, right);
  uint64_t slot = HashKey(key) & merge_mask_;
  while (true) {
    const MergeSlot& s = merge_slots_[slot];
    if (s.key == key) return &s.value;
    if (s.key == kEmptyKey) return nullptr;
    slot = (slot + 1) & merge_mask_;
  }
}

void BpeModel::InitialSymbols(std::string_view word, std::vector<int32_t>* symbols) const {
  symbols->clear();
  if (options_.byte_units) {
    bool last_unk = false;
    for (char c : word) {
      const int32_t id = byte_ids_[static_cast<uint8_t>(c)];
      if (id >= 0) {
        symbols->push_back(id);
        last_unk = false;
      } else if (options_.unk_id >= 0 && !(options_.fuse_unk && last_unk)) {
        symbols->push_back(options_.unk_id);
        last_unk = true;
      }
    }
    return;
  }
  bool last_unk = false;
  size_t i = 0;
  while (i < word.size()) {
    const auto lead = static_cast<uint8_t>(word[i]);
    size_t len = 1;
    int32_t id = -1;
    if (lead < 0x80) {
      id = ascii_ids_[lead];
    } else {
      char32_t cp = 0;
      len = DecodeUtf8(word, i, &cp);
      if (len == 0) len = 1;  // not reachable for validated input; treat as one unknown byte
      auto it = vocab_.find(word.substr(i, len));
      if (it != vocab_.end()) id = it->second;
    }
    if (id >= 0) {
      symbols->push_back(id);
      last_unk = false;
    } else {
      bool done = false;
      if (options_.byte_fallback) {
        bool all = true;
        for (size_t k = 0; k < len; ++k)
          all &= byte_fallback_ids_[static_cast<uint8_t>(word[i + k])] >= 0;
        if (all) {
          for (size_t k = 0; k < len; ++k) {
            symbols->push_back(byte_fallback_ids_[static_cast<uint8_t>(word[i + k])]);
          }
          last_unk = false;
          done = true;
        }
      }
      if (!done && options_.unk_id >= 0 && !(options_.fuse_unk && last_unk)) {
        symbols->push_back(options_.unk_id);
        last_unk = true;
      }
    }
    i += len;
  }
}

void BpeModel::MergeLinear(std::vector<int32_t>* symbols_ptr) const {
  std::vector<int32_t>& symbols = *symbols_ptr;
  Scratch& scratch = GetScratch();
  std::vector<int32_t>& ranks = scratch.ranks;
  std::vector<int32_t>& results = scratch.results;
  size_t n = symbols.size();
  if (n < 2) return;
  ranks.resize(n);
  results.resize(n);
  auto set_pair = [&](size_t i) {
    const MergeValue* m = FindMerge(symbols[i], symbols[i + 1]);
    ranks[i] = m != nullptr ? m->rank : kNoMerge;
    results[i] = m != nullptr ? m->result : -1;
  };
  for (size_t i = 0; i + 1 < n; ++i) set_pair(i);
  while (n > 1) {
    size_t best = 0;
    int32_t best_rank = ranks[0];
    for (size_t i = 1; i + 1 < n; ++i) {
      if (ranks[i] < best_rank) {
        best_rank = ranks[i];
        best = i;
      }
    }
    if (best_rank == kNoMerge) break;
    symbols[best] = results[best];
    // Remove symbol best+1 and pair best+1 (shifting the tail left).
    for (size_t i = best + 1; i + 1 < n; ++i) {
      symbols[i] = symbols[i + 1];
      ranks[i] = ranks[i + 1];
      results[i] = results[i + 1];
    }
    --n;
    if (best + 1 < n) set_pair(best);
    if (best > 0) set_pair(best - 1);
  }
  symbols.resize(n);
}

void BpeModel::MergeHeap(std::vector<int32_t>* symbols_ptr) const {
  std::vector<int32_t>& symbols = *symbols_ptr;
  const int32_t n = static_cast<int32_t>(symbols.size());
  std::vector<int32_t> prev(n), next(n);
  std::vector<uint8_t> alive(n, 1);
  for (int32_t i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  struct Entry {
    int32_t rank;
    int32_t pos;
    int32_t result;
    bool operator>(const Entry& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
  auto push_pair = [&](int32_t pos) {
    if (pos < 0 || next[pos] < 0) return;
    const MergeValue* m = FindMerge(symbols[pos], symbols[next[pos]]);
    if (m != nullptr) heap.push({m->rank, pos, m->result});
  };
  for (int32_t i = 0; i + 1 < n; ++i) push_pair(i);
  while (!heap.empty()) {
    const Entry top = heap.top();
    heap.pop();
    if (!alive[top.pos] || next[top.pos] < 0) continue;
    const int32_t right = next[top.pos];
    const MergeValue* m = FindMerge(symbols[top.pos], symbols[right]);
    if (m == nullptr || m->result != top.result) continue;  // stale entry
    symbols[top.pos] = top.result;
    alive[right] = 0;
    next[top.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = top.pos;
    push_pair(prev[top.pos]);
    push_pair(top.pos);
  }
  size_t out = 0;
  for (int32_t i = 0; i >= 0 && i < n; i = next[i]) symbols[out++] = symbols[i];
  symbols.resize(out);
}

void BpeModel::EncodeUncached(std::string_view word, std::vector<int32_t>* ids) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    auto it = vocab_.find(word);
    if (it != vocab_.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  std::vector<int32_t>& symbols = GetScratch().symbols;
  InitialSymbols(word, &symbols);
  if (symbols.size() <= kLinearMergeMaxSymbols) {
    MergeLinear(&symbols);
  } else {
    MergeHeap(&symbols);
  }
  ids->insert(ids->end(), symbols.begin(), symbols.end());
}

void BpeModel::Encode(std::string_view word, std::vector<int32_t>* ids) const {
  if (word.empty()) return;
  if (word.size() > kMaxCachedWordBytes) {
    EncodeUncached(word, ids);
    return;
  }
  WordCache& cache = CacheFor(serial_);
  const auto hash = static_cast<uint32_t>(HashBytes(word) >> 32);
  WordCache::Slot* slot = cache.Find(word, hash);
  if (slot->key_size != 0) {
    ids->insert(ids->end(), cache.ids.begin() + slot->ids_offset,
                cache.ids.begin() + slot->ids_offset + slot->num_ids);
    return;
  }
  const size_t before = ids->size();
  EncodeUncached(word, ids);
  const size_t num_ids = ids->size() - before;
  if (num_ids > 0xFFFF) return;
  if (cache.num_words >= WordCache::kMaxWords) {
    cache.Reset(serial_);
    slot = cache.Find(word, hash);
  } else if ((cache.num_words + 1) * 2 > cache.slots.size()) {
    cache.Grow();
    slot = cache.Find(word, hash);
  }
  slot->hash = hash;
  slot->key_offset = static_cast<uint32_t>(cache.keys.size());
  slot->key_size = static_cast<uint16_t>(word.size());
  slot->ids_offset = static_cast<uint32_t>(cache.ids.size());
  slot->num_ids = static_cast<uint16_t>(num_ids);
  cache.keys.append(word);
  cache.ids.insert(cache.ids.end(), ids->begin() + before, ids->end());
  ++cache.num_words;
}

}  // namespace kiln::tokenizer
