// Test-only checks of a Backend's KV block transfers (backend.h), shared by the CPU test (CI) and
// the CUDA test (GPU machine), so both backends are held to the same contract:
//  - round trip: blocks stored right after the Forward that wrote them (no sync in between),
//    loaded into other blocks and stored again come back bit-identical, and a decode step over
//    the loaded blocks gives bit-identical logits to one over the originals;
//  - load while running: a load issued just before another sequence's Forward lands correctly
//    (the decode over it matches) and leaves that Forward's logits unchanged.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "backend/backend.h"

namespace kiln::testing {

// One sequence of `tokens` at positions [start, start + n) over `table`.
inline ForwardBatch TableBatch(const std::vector<int32_t>& tokens, int start,
                               const std::vector<int32_t>& table, int block_size) {
  ForwardBatch b;
  const int n = static_cast<int>(tokens.size());
  b.token_ids = tokens;
  for (int i = 0; i < n; ++i) {
    const int pos = start + i;
    b.positions.push_back(pos);
    b.slot_mapping.push_back(int64_t{table[static_cast<size_t>(pos / block_size)]} * block_size +
                             pos % block_size);
  }
  b.logits_indices = {n - 1};
  b.cu_seqlens_q = {0, n};
  b.seq_lens = {start + n};
  b.max_blocks_per_seq = static_cast<int>(table.size());
  b.block_tables = table;
  b.is_decode_only = n == 1;
  return b;
}

// KvCopyDone that expects no error (an error counts as done, so that loops end).
inline bool CopyDone(Backend* backend, uint64_t ticket, double* seconds) {
  StatusOr<bool> done = backend->KvCopyDone(ticket, seconds);
  EXPECT_TRUE(done.ok()) << done.status().ToString();
  return !done.ok() || *done;
}

inline uint64_t CopyAndWait(Backend* backend, KvCopyDirection dir,
                            const std::vector<KvBlockCopy>& copies) {
  StatusOr<uint64_t> ticket = backend->CopyKvBlocks(dir, copies);
  EXPECT_TRUE(ticket.ok()) << ticket.status().ToString();
  if (!ticket.ok()) return 0;
  double seconds = 0.0;
  for (int i = 0; !CopyDone(backend, *ticket, &seconds); ++i) {
    EXPECT_LT(i, 100000) << "copy never completed";
    if (i >= 100000) break;
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  return *ticket;
}

inline std::vector<float> LogitsOf(Backend* backend, const ForwardBatch& batch) {
  std::vector<float> logits;
  Status s = backend->Forward(batch);
  EXPECT_TRUE(s.ok()) << s.ToString();
  s = backend->GetLogits(&logits);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return logits;
}

inline std::vector<int32_t> TestTokens(int n, int vocab, int salt) {
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.push_back(static_cast<int32_t>((i * 37 + salt * 11 + 5) % vocab));
  return t;
}

// Needs >= 64 device blocks of block_size >= 4 and a vocabulary >= 16.
inline void CheckKvTransferRoundTripAndLoadWhileRunning(Backend* backend) {
  const int bs = backend->block_size();
  const int vocab = backend->config().vocab_size;
  ASSERT_GE(backend->num_kv_blocks(), 64);
  const int64_t rec = backend->kv_block_record_bytes();
  ASSERT_GT(rec, 0);
  ASSERT_TRUE(backend->AllocateHostKvPool(16).ok());
  ASSERT_NE(backend->host_kv_pool(), nullptr);
  EXPECT_FALSE(backend->AllocateHostKvPool(16).ok()) << "a second pool must be refused";
  // Out-of-range copies are refused.
  EXPECT_FALSE(backend->CopyKvBlocks(KvCopyDirection::kHostToDevice, {{{0, 16}}}).ok());
  EXPECT_FALSE(backend->CopyKvBlocks(KvCopyDirection::kHostToDevice, {{{-1, 0}}}).ok());

  // Prefill P (3 full blocks) in blocks 0..3; store blocks 0..2 right after, without a sync.
  const std::vector<int32_t> p = TestTokens(3 * bs, vocab, 1);
  const std::vector<int32_t> orig = {0, 1, 2, 3};
  ASSERT_TRUE(backend->Forward(TableBatch(p, 0, orig, bs)).ok());
  CopyAndWait(backend, KvCopyDirection::kDeviceToHost, {{0, 0}, {1, 1}, {2, 2}});
  // Load into blocks 10..12, store those into records 3..5: bit-identical round trip.
  CopyAndWait(backend, KvCopyDirection::kHostToDevice, {{10, 0}, {11, 1}, {12, 2}});
  CopyAndWait(backend, KvCopyDirection::kDeviceToHost, {{10, 3}, {11, 4}, {12, 5}});
  const uint8_t* pool = backend->host_kv_pool();
  std::vector<uint8_t> zero(static_cast<size_t>(rec), 0);
  for (int i = 0; i < 3; ++i) {
    EXPECT_NE(std::memcmp(pool + i * rec, zero.data(), static_cast<size_t>(rec)), 0)
        << "record " << i << " is empty";
    EXPECT_EQ(std::memcmp(pool + i * rec, pool + (i + 3) * rec, static_cast<size_t>(rec)), 0)
        << "record " << i << " changed in the round trip";
  }
  // Different blocks hold different KV.
  EXPECT_NE(std::memcmp(pool, pool + rec, static_cast<size_t>(rec)), 0);

  // A decode step over the loaded copy equals one over the original.
  const std::vector<int32_t> next = {static_cast<int32_t>(7 % vocab)};
  const std::vector<float> want = LogitsOf(backend, TableBatch(next, 3 * bs, orig, bs));
  const std::vector<float> got = LogitsOf(backend, TableBatch(next, 3 * bs, {10, 11, 12, 13}, bs));
  ASSERT_EQ(got.size(), want.size());
  EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0);

  // Load while running: Q's logits alone, then Q again right after a load was issued.
  const std::vector<int32_t> q = TestTokens(5 * bs + 3, vocab, 2);
  std::vector<int32_t> q_table;
  for (int i = 0; i < 6; ++i) q_table.push_back(30 + i);
  const std::vector<float> q_alone = LogitsOf(backend, TableBatch(q, 0, q_table, bs));
  StatusOr<uint64_t> ticket =
      backend->CopyKvBlocks(KvCopyDirection::kHostToDevice, {{{20, 0}, {21, 1}, {22, 2}}});
  ASSERT_TRUE(ticket.ok()) << ticket.status().ToString();
  const std::vector<float> q_during = LogitsOf(backend, TableBatch(q, 0, q_table, bs));
  EXPECT_EQ(std::memcmp(q_during.data(), q_alone.data(), q_alone.size() * sizeof(float)), 0);
  double seconds = -1.0;
  for (int i = 0; !CopyDone(backend, *ticket, &seconds); ++i) {
    ASSERT_LT(i, 100000);
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  EXPECT_GE(seconds, 0.0);
  const std::vector<float> loaded =
      LogitsOf(backend, TableBatch(next, 3 * bs, {20, 21, 22, 23}, bs));
  EXPECT_EQ(std::memcmp(loaded.data(), want.data(), want.size() * sizeof(float)), 0);
}

}  // namespace kiln::testing
