#include "kv/kv_cache_manager.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <random>
#include <vector>

namespace kiln {
namespace {

std::vector<int32_t> Seq(int n, int32_t start) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) t[static_cast<size_t>(i)] = start + i;
  return t;
}

Status Check(const KvCacheManager& m, std::vector<KvSequence*> live) {
  std::vector<const KvSequence*> c(live.begin(), live.end());
  return m.CheckInvariants(c);
}

TEST(KvCacheManagerTest, ReusesFullBlocksOfASharedPrefixButNeverTheLastToken) {
  KvCacheManager m({.block_size = 4, .num_blocks = 16, .enable_prefix_caching = true});
  const auto prompt = Seq(10, 1);
  KvSequence a;
  PrefixHit hit;
  EXPECT_EQ(m.FindCachedPrefix(&a, prompt, &hit), 0);
  ASSERT_TRUE(m.AllocateSlots(&a, 0, 10));
  EXPECT_EQ(a.block_table.size(), 3u);
  m.CacheComputedBlocks(&a, prompt, 10);
  EXPECT_EQ(a.num_registered_blocks, 2);

  auto other = prompt;
  other.push_back(77);
  KvSequence b;
  EXPECT_EQ(m.FindCachedPrefix(&b, other, &hit), 8);
  EXPECT_EQ(hit.device_blocks, std::vector<int32_t>(a.block_table.begin(), a.block_table.begin() + 2));
  ASSERT_TRUE(m.AllocateSlots(&b, 8, 3, &hit));
  EXPECT_EQ(m.pool().block(hit.device_blocks[0]).ref_count, 2);

  // A prompt of exactly 8 tokens: only the first block may be reused.
  KvSequence c;
  EXPECT_EQ(m.FindCachedPrefix(&c, Seq(8, 1), &hit), 4);
  // A different salt shares nothing.
  KvSequence d;
  d.extra_keys = "tenant-2";
  EXPECT_EQ(m.FindCachedPrefix(&d, other, &hit), 0);
  EXPECT_TRUE(Check(m, {&a, &b}).ok());
  m.Free(&a);
  m.Free(&b);
  EXPECT_TRUE(Check(m, {}).ok());
  EXPECT_EQ(m.pool().num_free_blocks(), 16);
  EXPECT_EQ(m.pool().num_cached_free_blocks(), 2);
}

TEST(KvCacheManagerTest, AllocationFailureChangesNothing) {
  KvCacheManager m({.block_size = 4, .num_blocks = 4, .enable_prefix_caching = true});
  const auto p = Seq(8, 0);
  KvSequence a;
  ASSERT_TRUE(m.AllocateSlots(&a, 0, 8));
  m.CacheComputedBlocks(&a, p, 8);
  m.Free(&a);
  KvSequence b;
  PrefixHit hit;
  auto q = p;
  q.push_back(1);
  ASSERT_EQ(m.FindCachedPrefix(&b, q, &hit), 8);
  // 8 cached + 12 new tokens = 5 blocks > 4: refused, the cached blocks stay free and cached.
  EXPECT_FALSE(m.AllocateSlots(&b, 8, 12, &hit));
  EXPECT_TRUE(b.block_table.empty());
  EXPECT_EQ(m.pool().num_cached_free_blocks(), 2);
  EXPECT_TRUE(m.AllocateSlots(&b, 8, 8, &hit));
  EXPECT_EQ(b.block_table.size(), 4u);
  EXPECT_EQ(m.num_evictions(), 0);
  EXPECT_TRUE(Check(m, {&b}).ok());
}

TEST(KvCacheManagerTest, EvictedPrefixIsRecomputedNotMisread) {
  KvCacheManager m({.block_size = 2, .num_blocks = 3, .enable_prefix_caching = true});
  const auto p = Seq(5, 0);
  KvSequence a;
  ASSERT_TRUE(m.AllocateSlots(&a, 0, 5));
  m.CacheComputedBlocks(&a, p, 5);
  m.Free(&a);
  KvSequence b;  // an unrelated sequence takes every block
  ASSERT_TRUE(m.AllocateSlots(&b, 0, 6));
  const auto other = Seq(6, 100);
  m.CacheComputedBlocks(&b, other, 6);
  m.Free(&b);
  EXPECT_EQ(m.num_evictions(), 2);
  KvSequence c;
  PrefixHit hit;
  EXPECT_EQ(m.FindCachedPrefix(&c, p, &hit), 0);
  EXPECT_TRUE(Check(m, {}).ok());
}

// The host tier path: a computed full block is stored (its device block pinned until the store
// completes), found on the host after the device copy was evicted, loaded into a new device block
// (the sequence waits until the load completes), and a sequence freed while its load is in flight
// leaves the destination blocks pinned until the copy is done.
TEST(KvCacheManagerTest, StoresToHostAndLoadsBackWithPins) {
  std::vector<uint8_t> mem(8 * 16);
  HostTier host(mem.data(), 16, 8, 4);
  KvCacheManager m({.block_size = 4, .num_blocks = 8, .enable_prefix_caching = true}, &host);
  const auto p = Seq(9, 1);
  KvSequence a;
  ASSERT_TRUE(m.AllocateSlots(&a, 0, 9));
  m.CacheComputedBlocks(&a, p, 9);
  std::vector<KvCopyGroup> groups;
  m.TakeCopyGroups(&groups);
  ASSERT_EQ(groups.size(), 1u);
  EXPECT_TRUE(groups[0].to_host);
  ASSERT_EQ(groups[0].transfers.size(), 2u);
  EXPECT_EQ(groups[0].transfers[0].device_block, a.block_table[0]);
  m.Free(&a);
  EXPECT_EQ(m.pool().num_used_blocks(), 2) << "store sources stay pinned";
  EXPECT_TRUE(Check(m, {}).ok());
  EXPECT_TRUE(m.has_pending_io());
  m.CompleteCopyGroup(groups[0].id, Status::Ok(), 0.001);
  EXPECT_EQ(m.pool().num_used_blocks(), 0);
  EXPECT_EQ(host.num_published(), 2);
  // Evict the device copies.
  KvSequence e;
  ASSERT_TRUE(m.AllocateSlots(&e, 0, 32));
  m.Free(&e);
  EXPECT_EQ(m.pool().num_cached_blocks(), 0);

  for (bool free_early : {false, true}) {
    auto q = p;
    q.resize(8);
    q.push_back(99);
    KvSequence b;
    PrefixHit hit;
    ASSERT_EQ(m.FindCachedPrefix(&b, q, &hit), 8);
    EXPECT_EQ(hit.num_host_blocks(), 2);
    ASSERT_TRUE(m.AllocateSlots(&b, 8, 0, &hit));
    EXPECT_TRUE(m.LoadPending(b));
    groups.clear();
    m.TakeCopyGroups(&groups);
    ASSERT_EQ(groups.size(), 1u);
    EXPECT_FALSE(groups[0].to_host);
    EXPECT_EQ(groups[0].transfers[0].device_block, b.block_table[0]);
    EXPECT_EQ(groups[0].transfers[0].host_record, hit.host_records[0]);
    EXPECT_TRUE(Check(m, {&b}).ok());
    if (free_early) {
      m.Free(&b);
      EXPECT_EQ(m.pool().num_used_blocks(), 2) << "load targets stay pinned";
      EXPECT_TRUE(Check(m, {}).ok());
      m.CompleteCopyGroup(groups[0].id, Status::Ok(), 0.001);
    } else {
      m.CompleteCopyGroup(groups[0].id, Status::Ok(), 0.001);
      EXPECT_FALSE(m.LoadPending(b));
      EXPECT_EQ(*m.FinishLoad(&b, q), 8);
      // The loaded blocks are now device-cached: a new lookup hits them on the device.
      KvSequence c;
      PrefixHit again;
      EXPECT_EQ(m.FindCachedPrefix(&c, q, &again), 8);
      EXPECT_EQ(again.num_host_blocks(), 0);
      m.Free(&b);
    }
    EXPECT_TRUE(Check(m, {}).ok());
    EXPECT_EQ(m.pool().num_used_blocks(), 0);
    EXPECT_FALSE(m.has_pending_io());
    // Evict again for the next round.
    KvSequence x;
    ASSERT_TRUE(m.AllocateSlots(&x, 0, 32));
    m.Free(&x);
  }
  EXPECT_TRUE(host.CheckInvariants().ok());
}

// Regression: StoreToHost checked only the host index, not stores in flight, so sequences that
// computed the same blocks in one step (n > 1 on one prompt) stored every block once each.
TEST(KvCacheManagerTest, IdenticalBlocksOfOneStepAreStoredOnce) {
  std::vector<uint8_t> mem(16 * 16);
  HostTier host(mem.data(), 16, 16, 4);
  KvCacheManager m({.block_size = 4, .num_blocks = 32, .enable_prefix_caching = true}, &host);
  const auto p = Seq(13, 1);
  KvSequence a, b;
  ASSERT_TRUE(m.AllocateSlots(&a, 0, 13));
  ASSERT_TRUE(m.AllocateSlots(&b, 0, 13));
  m.CacheComputedBlocks(&a, p, 13);
  m.CacheComputedBlocks(&b, p, 13);
  std::vector<KvCopyGroup> groups;
  m.TakeCopyGroups(&groups);
  ASSERT_EQ(groups.size(), 1u);
  EXPECT_EQ(groups[0].transfers.size(), 3u) << "one store transfer per distinct block";
  // While that store is in flight, a third sequence computing the same blocks stores nothing.
  KvSequence c;
  ASSERT_TRUE(m.AllocateSlots(&c, 0, 13));
  m.CacheComputedBlocks(&c, p, 13);
  std::vector<KvCopyGroup> more;
  m.TakeCopyGroups(&more);
  EXPECT_TRUE(more.empty());
  m.CompleteCopyGroup(groups[0].id, Status::Ok(), 0.0);
  EXPECT_EQ(host.num_published(), 3);
  // A failed store forgets its keys: the blocks are stored again when computed again.
  for (KvSequence* s : {&a, &b, &c}) m.Free(s);
  KvSequence e;
  ASSERT_TRUE(m.AllocateSlots(&e, 0, 128));  // evicts the device copies
  m.Free(&e);
  const auto q = Seq(9, 100);
  KvSequence d;
  ASSERT_TRUE(m.AllocateSlots(&d, 0, 9));
  m.CacheComputedBlocks(&d, q, 9);
  m.TakeCopyGroups(&more);
  ASSERT_EQ(more.size(), 1u);
  m.CompleteCopyGroup(more[0].id, Status::Internal("injected"), 0.0);
  m.Free(&d);
  KvSequence d2;
  ASSERT_TRUE(m.AllocateSlots(&d2, 0, 9));
  m.CacheComputedBlocks(&d2, q, 9);
  more.clear();
  m.TakeCopyGroups(&more);
  ASSERT_EQ(more.size(), 1u);
  EXPECT_EQ(more[0].transfers.size(), 2u);
  m.CompleteCopyGroup(more[0].id, Status::Ok(), 0.0);
  m.Free(&d2);
  EXPECT_EQ(host.num_published(), 5);
  EXPECT_TRUE(Check(m, {}).ok());
  EXPECT_EQ(m.pool().num_used_blocks(), 0);
}

// A failed load fails only its sequence: FinishLoad reports it and nothing leaks.
TEST(KvCacheManagerTest, FailedLoadIsReported) {
  std::vector<uint8_t> mem(4 * 16);
  HostTier host(mem.data(), 16, 4, 4);
  KvCacheManager m({.block_size = 4, .num_blocks = 4, .enable_prefix_caching = true}, &host);
  const auto p = Seq(5, 1);
  KvSequence a;
  ASSERT_TRUE(m.AllocateSlots(&a, 0, 5));
  m.CacheComputedBlocks(&a, p, 5);
  std::vector<KvCopyGroup> groups;
  m.TakeCopyGroups(&groups);
  m.CompleteCopyGroup(groups[0].id, Status::Ok(), 0.0);
  m.Free(&a);
  KvSequence e;
  ASSERT_TRUE(m.AllocateSlots(&e, 0, 16));
  m.Free(&e);
  KvSequence b;
  PrefixHit hit;
  ASSERT_EQ(m.FindCachedPrefix(&b, p, &hit), 4);
  ASSERT_TRUE(m.AllocateSlots(&b, 4, 0, &hit));
  groups.clear();
  m.TakeCopyGroups(&groups);
  m.CompleteCopyGroup(groups[0].id, Status::Internal("injected"), 0.0);
  const StatusOr<int> loaded = m.FinishLoad(&b, p);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().message(), "injected");
  m.Free(&b);
  EXPECT_TRUE(Check(m, {}).ok());
  EXPECT_EQ(m.pool().num_used_blocks(), 0);
  EXPECT_EQ(m.TierMetrics()[1].errors, 1);
}

// Randomized: thousands of allocate / extend / cache / free operations over sequences drawn from a
// few shared prefixes; after every operation the accounting and ref-count invariants hold, and
// every cache hit returns blocks registered for exactly those tokens.
TEST(KvCacheManagerTest, RandomizedOperationsKeepInvariants) {
  std::mt19937 rng(1234);
  const int bs = 4;
  KvCacheManager m({.block_size = bs, .num_blocks = 40, .enable_prefix_caching = true});
  struct Live {
    KvSequence kv;
    std::vector<int32_t> tokens;
    int computed = 0;
  };
  std::vector<std::unique_ptr<Live>> live;
  std::vector<std::vector<int32_t>> bases = {Seq(24, 0), Seq(24, 1000), Seq(24, 2000)};
  // Expected content of every registered block, to verify hits.
  std::vector<std::vector<int32_t>> block_content(40);
  int64_t hits_seen = 0;
  for (int op = 0; op < 20000; ++op) {
    const int kind = static_cast<int>(rng() % 4);
    if (kind == 0 && live.size() < 8) {
      auto l = std::make_unique<Live>();
      const auto& base = bases[rng() % bases.size()];
      const int keep = static_cast<int>(rng() % base.size()) + 1;
      l->tokens.assign(base.begin(), base.begin() + keep);
      const int extra = static_cast<int>(rng() % 6);
      for (int i = 0; i < extra; ++i) l->tokens.push_back(static_cast<int32_t>(rng() % 50));
      if (rng() % 8 == 0) l->kv.extra_keys = "salt";
      PrefixHit hit;
      const int cached = m.FindCachedPrefix(&l->kv, l->tokens, &hit);
      ASSERT_LT(cached, static_cast<int>(l->tokens.size()));
      for (size_t i = 0; i < hit.device_blocks.size(); ++i) {
        std::vector<int32_t> want(l->tokens.begin() + static_cast<ptrdiff_t>(i) * bs,
                                  l->tokens.begin() + static_cast<ptrdiff_t>(i + 1) * bs);
        ASSERT_EQ(block_content[static_cast<size_t>(hit.device_blocks[i])], want)
            << "hit on wrong KV";
      }
      hits_seen += cached;
      const int n = static_cast<int>(l->tokens.size()) - cached;
      if (m.AllocateSlots(&l->kv, cached, n, &hit)) {
        l->computed = static_cast<int>(l->tokens.size());
        for (size_t i = hit.device_blocks.size(); i * bs + bs <= l->tokens.size(); ++i) {
          block_content[static_cast<size_t>(l->kv.block_table[i])].assign(
              l->tokens.begin() + static_cast<ptrdiff_t>(i) * bs,
              l->tokens.begin() + static_cast<ptrdiff_t>(i + 1) * bs);
        }
        m.CacheComputedBlocks(&l->kv, l->tokens, l->computed);
        live.push_back(std::move(l));
      } else {
        ASSERT_TRUE(l->kv.block_table.empty());
      }
    } else if (kind == 1 && !live.empty()) {  // decode one token
      Live& l = *live[rng() % live.size()];
      if (m.AllocateSlots(&l.kv, l.computed, 1)) {
        l.tokens.push_back(static_cast<int32_t>(rng() % 50));
        ++l.computed;
        if (l.computed % bs == 0) {
          const size_t i = static_cast<size_t>(l.computed / bs - 1);
          block_content[static_cast<size_t>(l.kv.block_table[i])].assign(l.tokens.end() - bs,
                                                                         l.tokens.end());
        }
        m.CacheComputedBlocks(&l.kv, l.tokens, l.computed);
      }
    } else if (kind >= 2 && !live.empty()) {  // finish / abort
      const size_t i = rng() % live.size();
      m.Free(&live[i]->kv);
      live.erase(live.begin() + static_cast<ptrdiff_t>(i));
    }
    std::vector<KvSequence*> seqs;
    for (auto& l : live) seqs.push_back(&l->kv);
    ASSERT_TRUE(Check(m, seqs).ok()) << Check(m, seqs).ToString() << " at op " << op;
  }
  EXPECT_GT(hits_seen, 0);
  EXPECT_GT(m.num_evictions(), 0);
}

}  // namespace
}  // namespace kiln
