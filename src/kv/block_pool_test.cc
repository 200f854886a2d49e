#include "kv/block_pool.h"

#include <gtest/gtest.h>

#include <vector>

namespace kiln {
namespace {

std::vector<int32_t> Tokens(int n, int32_t start) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) t[static_cast<size_t>(i)] = start + i;
  return t;
}

TEST(BlockPoolTest, AllocateIsAllOrNothing) {
  BlockPool pool(4, 2, true);
  std::vector<int32_t> ids;
  EXPECT_FALSE(pool.Allocate(5, &ids));
  EXPECT_TRUE(ids.empty());
  EXPECT_TRUE(pool.Allocate(3, &ids));
  EXPECT_EQ(ids.size(), 3u);
  EXPECT_EQ(pool.num_free_blocks(), 1);
  EXPECT_EQ(pool.num_used_blocks(), 3);
  EXPECT_FALSE(pool.Allocate(2, &ids));
  EXPECT_EQ(ids.size(), 3u);
  EXPECT_TRUE(pool.CheckInvariants().ok());
}

TEST(BlockPoolTest, CachedBlocksAreEvictedLruAndEmptyBlocksFirst) {
  BlockPool pool(3, 2, true);
  std::vector<int32_t> ids;
  ASSERT_TRUE(pool.Allocate(3, &ids));
  const auto t0 = Tokens(2, 0), t1 = Tokens(2, 10);
  const BlockHash h0 = ChainBlockHash(RootBlockHash(""), t0);
  const BlockHash h1 = ChainBlockHash(h0, t1);
  pool.Cache(ids[0], h0, t0, RootBlockHash(""));
  pool.Cache(ids[1], h1, t1, h0);
  pool.Unref(ids[0]);  // cached: LRU tail
  pool.Unref(ids[1]);  // cached: after ids[0]
  pool.Unref(ids[2]);  // empty: list head
  EXPECT_EQ(pool.num_cached_free_blocks(), 2);
  ASSERT_TRUE(pool.CheckInvariants().ok());
  std::vector<int32_t> got;
  ASSERT_TRUE(pool.Allocate(1, &got));
  EXPECT_EQ(got[0], ids[2]);  // the empty block is reused before any cached one
  EXPECT_EQ(pool.num_evictions(), 0);
  ASSERT_TRUE(pool.Allocate(1, &got));
  EXPECT_EQ(got[1], ids[0]);  // then the least recently freed cached block
  EXPECT_EQ(pool.num_evictions(), 1);
  EXPECT_EQ(pool.Find(h0, t0, RootBlockHash("")), -1);
  // ids[1] is still found under its own chain although its parent was evicted (the parent can be
  // reloaded from a lower tier), but never under another parent.
  EXPECT_EQ(pool.Find(h1, t1, h0), ids[1]);
  EXPECT_EQ(pool.Find(h1, t1, RootBlockHash("")), -1);
  EXPECT_TRUE(pool.CheckInvariants().ok());
}

TEST(BlockPoolTest, ReviveRemovesFromFreeListInConstantTime) {
  BlockPool pool(4, 2, true);
  std::vector<int32_t> ids;
  ASSERT_TRUE(pool.Allocate(1, &ids));
  const auto t = Tokens(2, 5);
  const BlockHash h = ChainBlockHash(RootBlockHash("salt"), t);
  pool.Cache(ids[0], h, t, RootBlockHash("salt"));
  pool.Unref(ids[0]);
  EXPECT_EQ(pool.Find(h, t, RootBlockHash("salt")), ids[0]);
  EXPECT_EQ(pool.Find(h, t, RootBlockHash("other")), -1);  // the root (salt) is verified
  pool.Ref(ids[0]);
  EXPECT_EQ(pool.num_free_blocks(), 3);
  EXPECT_EQ(pool.num_cached_free_blocks(), 0);
  EXPECT_EQ(pool.block(ids[0]).ref_count, 1);
  EXPECT_TRUE(pool.CheckInvariants().ok());
}

// Regression guard for the collision rule: a hash hit whose stored tokens differ is a miss.
TEST(BlockPoolTest, HashHitWithDifferentTokensIsRejected) {
  BlockPool pool(2, 4, true);
  std::vector<int32_t> ids;
  ASSERT_TRUE(pool.Allocate(1, &ids));
  const auto a = Tokens(4, 0), b = Tokens(4, 100);
  const BlockHash forged = ChainBlockHash(RootBlockHash(""), a);
  pool.Cache(ids[0], forged, a, RootBlockHash(""));
  EXPECT_EQ(pool.Find(forged, a, RootBlockHash("")), ids[0]);
  EXPECT_EQ(pool.Find(forged, b, RootBlockHash("")), -1);  // same hash, other tokens
  EXPECT_EQ(pool.Find(forged, a, RootBlockHash("x")), -1);  // same hash, other parent
}

TEST(BlockPoolTest, DisabledCachingNeverHits) {
  BlockPool pool(2, 2, false);
  std::vector<int32_t> ids;
  ASSERT_TRUE(pool.Allocate(1, &ids));
  const auto t = Tokens(2, 0);
  const BlockHash h = ChainBlockHash(RootBlockHash(""), t);
  pool.Cache(ids[0], h, t, RootBlockHash(""));
  EXPECT_EQ(pool.Find(h, t, RootBlockHash("")), -1);
  pool.Unref(ids[0]);
  EXPECT_TRUE(pool.CheckInvariants().ok());
}

TEST(BlockHashTest, ChainsAndSaltsDistinguish) {
  const auto t = Tokens(16, 0);
  const BlockHash r = RootBlockHash("");
  EXPECT_EQ(ChainBlockHash(r, t), ChainBlockHash(r, t));
  EXPECT_FALSE(ChainBlockHash(r, t) == ChainBlockHash(RootBlockHash("s"), t));
  auto t2 = t;
  t2[15] = 99;
  EXPECT_FALSE(ChainBlockHash(r, t) == ChainBlockHash(r, t2));
  EXPECT_FALSE(ChainBlockHash(ChainBlockHash(r, t), t) == ChainBlockHash(r, t));
  EXPECT_FALSE(RootBlockHash("a") == RootBlockHash(std::string_view("a\0", 2)));
  // The namespace (model, dtype, layout) separates roots: ("ab", "") != ("a", "b").
  EXPECT_FALSE(RootBlockHash("ab", "") == RootBlockHash("a", "b"));
}

// The hash is persisted by the disk and Redis tiers: pin its values (XXH3-128, format 1) so that a
// change of function or layout cannot go unnoticed (bump kBlockHashFormat with it).
TEST(BlockHashTest, FormatIsPinned) {
  EXPECT_EQ(kBlockHashFormat, 1u);
  const BlockHash root = RootBlockHash("ns", "salt");
  const BlockHash h = ChainBlockHash(root, std::vector<int32_t>{1, 2, 3, 4});
  EXPECT_EQ(root.Hex().size(), 32u);
  EXPECT_EQ(h.Hex(), "b59826f1aa3e3717864f7ca721b5b03a");
}

}  // namespace
}  // namespace kiln
