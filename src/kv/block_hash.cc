#include "kv/block_hash.h"

#include <cstring>

namespace kiln {
namespace {

constexpr uint64_t kP1 = 0x9E3779B97F4A7C15ull;
constexpr uint64_t kP2 = 0xC2B2AE3D27D4EB4Full;
constexpr uint64_t kP3 = 0x165667B19E3779F9ull;
constexpr uint64_t kP4 = 0xD6E8FEB86659FD93ull;

inline uint64_t Rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

// splitmix64 finalizer: a bijective avalanche mix.
inline uint64_t Fmix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Two independent 64-bit lanes over 64-bit words, cross-mixed at the end (128-bit state).
struct Hasher128 {
  uint64_t a;
  uint64_t b;
  uint64_t n = 0;
  Hasher128(uint64_t seed_lo, uint64_t seed_hi) : a(seed_lo ^ kP1), b(seed_hi ^ kP2) {}
  void Word(uint64_t w) {
    a = Rotl((a ^ Fmix(w + kP3)) * kP1, 29);
    b = Rotl((b + Fmix(w ^ kP4)) * kP2, 33) ^ a;
    ++n;
  }
  BlockHash Finish() const {
    BlockHash h;
    h.lo = Fmix(a ^ Rotl(b, 17) ^ (n * kP3));
    h.hi = Fmix(b + a * kP4 + n);
    return h;
  }
};

}  // namespace

BlockHash RootBlockHash(std::string_view extra_keys) {
  Hasher128 hasher(0x6B696C6E726F6F74ull, extra_keys.size());  // "klnroot"
  size_t i = 0;
  for (; i + 8 <= extra_keys.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, extra_keys.data() + i, 8);
    hasher.Word(w);
  }
  uint64_t tail = 0;
  std::memcpy(&tail, extra_keys.data() + i, extra_keys.size() - i);
  hasher.Word(tail ^ (static_cast<uint64_t>(extra_keys.size() - i) << 56));
  return hasher.Finish();
}

BlockHash ChainBlockHash(const BlockHash& parent, std::span<const int32_t> token_ids) {
  Hasher128 hasher(parent.lo, parent.hi);
  size_t i = 0;
  for (; i + 2 <= token_ids.size(); i += 2) {
    hasher.Word(static_cast<uint32_t>(token_ids[i]) |
                (static_cast<uint64_t>(static_cast<uint32_t>(token_ids[i + 1])) << 32));
  }
  if (i < token_ids.size()) hasher.Word(static_cast<uint32_t>(token_ids[i]) | (1ull << 63));
  hasher.Word(token_ids.size());
  return hasher.Finish();
}

}  // namespace kiln
