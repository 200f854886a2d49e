#include "kv/block_record.h"

#include <cstring>
#include <string>

namespace kiln {
namespace {

constexpr size_t kFixedBytes = 72;

template <typename T>
void Put(uint8_t* p, size_t off, T v) {
  std::memcpy(p + off, &v, sizeof(T));
}
template <typename T>
T Get(const uint8_t* p, size_t off) {
  T v;
  std::memcpy(&v, p + off, sizeof(T));
  return v;
}

}  // namespace

int64_t BlockRecordHeaderBytes(int block_size) {
  return static_cast<int64_t>(kFixedBytes) + 4 * int64_t{block_size} + 8;
}

void EncodeBlockRecord(const BlockRecordKey& k, std::span<const uint8_t> payload,
                       std::vector<uint8_t>* out) {
  const int bs = static_cast<int>(k.token_ids.size());
  const size_t header = static_cast<size_t>(BlockRecordHeaderBytes(bs));
  out->resize(header + payload.size());
  uint8_t* p = out->data();
  Put<uint32_t>(p, 0, kBlockRecordMagic);
  Put<uint16_t>(p, 4, kBlockRecordFormat);
  Put<uint16_t>(p, 6, static_cast<uint16_t>(kBlockHashFormat));
  Put<uint64_t>(p, 8, k.key.lo);
  Put<uint64_t>(p, 16, k.key.hi);
  Put<uint64_t>(p, 24, k.parent.lo);
  Put<uint64_t>(p, 32, k.parent.hi);
  Put<uint64_t>(p, 40, k.namespace_hash);
  Put<uint32_t>(p, 48, static_cast<uint32_t>(bs));
  Put<uint32_t>(p, 52, 0);
  Put<uint64_t>(p, 56, payload.size());
  Put<uint64_t>(p, 64, Checksum64(payload.data(), payload.size()));
  if (bs > 0) std::memcpy(p + kFixedBytes, k.token_ids.data(), k.token_ids.size_bytes());
  Put<uint64_t>(p, header - 8, Checksum64(p, header - 8));
  if (!payload.empty()) std::memcpy(p + header, payload.data(), payload.size());
}

Status DecodeBlockRecord(std::span<const uint8_t> record, const BlockRecordKey& expected,
                         std::span<uint8_t> payload) {
  auto bad = [](const std::string& m) { return Status::DataLoss("block record: " + m); };
  const int bs = static_cast<int>(expected.token_ids.size());
  const size_t header = static_cast<size_t>(BlockRecordHeaderBytes(bs));
  if (record.size() < header) return bad("truncated header");
  const uint8_t* p = record.data();
  if (Get<uint32_t>(p, 0) != kBlockRecordMagic) return bad("bad magic");
  if (Get<uint16_t>(p, 4) != kBlockRecordFormat) return bad("unknown record format");
  if (Get<uint16_t>(p, 6) != kBlockHashFormat) return bad("unknown hash format");
  if (Get<uint32_t>(p, 48) != static_cast<uint32_t>(bs)) return bad("block size differs");
  if (Get<uint64_t>(p, header - 8) != Checksum64(p, header - 8)) return bad("header checksum");
  if (Get<uint64_t>(p, 8) != expected.key.lo || Get<uint64_t>(p, 16) != expected.key.hi)
    return bad("key differs");
  if (Get<uint64_t>(p, 24) != expected.parent.lo || Get<uint64_t>(p, 32) != expected.parent.hi)
    return bad("parent differs");
  if (Get<uint64_t>(p, 40) != expected.namespace_hash) return bad("cache namespace differs");
  if (bs > 0 &&
      std::memcmp(p + kFixedBytes, expected.token_ids.data(), expected.token_ids.size_bytes()) != 0)
    return bad("token ids differ");
  const uint64_t n = Get<uint64_t>(p, 56);
  if (n != payload.size()) return bad("payload size differs");
  if (record.size() != header + n) return bad("truncated payload");
  if (Get<uint64_t>(p, 64) != Checksum64(p + header, n)) return bad("payload checksum");
  if (n > 0) std::memcpy(payload.data(), p + header, n);
  return Status::Ok();
}

}  // namespace kiln
