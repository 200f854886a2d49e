#include "kv/block_hash.h"

#include <xxhash.h>

#include <cstring>
#include <vector>

namespace kiln {
namespace {

BlockHash FromXxh(XXH128_hash_t h) { return BlockHash{h.low64, h.high64}; }

}  // namespace

std::string BlockHash::Hex() const {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s(32, '0');
  for (int i = 0; i < 16; ++i) {
    s[static_cast<size_t>(15 - i)] = kDigits[(hi >> (4 * i)) & 15];
    s[static_cast<size_t>(31 - i)] = kDigits[(lo >> (4 * i)) & 15];
  }
  return s;
}

BlockHash RootBlockHash(std::string_view cache_namespace, std::string_view extra_keys) {
  thread_local std::vector<unsigned char> buf;
  const uint64_t n = cache_namespace.size();
  buf.resize(8 + cache_namespace.size() + extra_keys.size());
  std::memcpy(buf.data(), &n, 8);
  if (!cache_namespace.empty()) std::memcpy(buf.data() + 8, cache_namespace.data(), n);
  if (!extra_keys.empty()) std::memcpy(buf.data() + 8 + n, extra_keys.data(), extra_keys.size());
  return FromXxh(XXH3_128bits_withSeed(buf.data(), buf.size(), kBlockHashFormat));
}

BlockHash ChainBlockHash(const BlockHash& parent, std::span<const int32_t> token_ids) {
  thread_local std::vector<unsigned char> buf;
  buf.resize(16 + token_ids.size_bytes());
  std::memcpy(buf.data(), &parent.lo, 8);
  std::memcpy(buf.data() + 8, &parent.hi, 8);
  if (!token_ids.empty()) std::memcpy(buf.data() + 16, token_ids.data(), token_ids.size_bytes());
  return FromXxh(XXH3_128bits_withSeed(buf.data(), buf.size(), kBlockHashFormat));
}

uint64_t Checksum64(const void* data, size_t size) { return XXH3_64bits(data, size); }

}  // namespace kiln
