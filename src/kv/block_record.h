// Block records: the self-describing, checksummed byte format in which the disk and Redis tiers
// store one KV block (docs/KV_TIERS.md documents it byte by byte). A record carries its key, its
// parent's key, its token ids and the hash of the cache namespace (model, dtype, KV layout), so a
// reader verifies that it holds exactly the block it asked for; a truncated, corrupted or foreign
// record decodes to DataLoss, never to wrong KV.
//
// Layout (little-endian), header then payload:
//   0  u32 magic 0x4B42564B ("KVBK")   4  u16 record format (kBlockRecordFormat)
//   6  u16 hash format (kBlockHashFormat)
//   8  u64 key.lo  16 u64 key.hi  24 u64 parent.lo  32 u64 parent.hi
//   40 u64 namespace hash (XXH3-64 of the cache namespace)
//   48 u32 block_size (tokens)  52 u32 reserved (0)
//   56 u64 payload bytes  64 u64 payload checksum (XXH3-64)
//   72 i32 token_ids[block_size]
//   72 + 4 block_size: u64 header checksum (XXH3-64 of every byte before it)
//   then the payload (the backend's block record).
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kiln/status.h"
#include "kv/block_hash.h"

namespace kiln {

inline constexpr uint32_t kBlockRecordMagic = 0x4B42564B;
inline constexpr uint16_t kBlockRecordFormat = 1;

struct BlockRecordKey {
  BlockHash key;
  BlockHash parent;
  uint64_t namespace_hash = 0;
  std::span<const int32_t> token_ids;
};

// Header bytes for a block of block_size tokens.
int64_t BlockRecordHeaderBytes(int block_size);

// Writes header + payload into *out (resized).
void EncodeBlockRecord(const BlockRecordKey& k, std::span<const uint8_t> payload,
                       std::vector<uint8_t>* out);

// Verifies `record` against the expected key (key, parent, namespace, token ids) and payload size
// and copies the payload into `payload` (exactly its size). DataLoss on any mismatch.
Status DecodeBlockRecord(std::span<const uint8_t> record, const BlockRecordKey& expected,
                         std::span<uint8_t> payload);

}  // namespace kiln
