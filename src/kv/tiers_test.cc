// The tier building blocks: HostTier (LRU, pins, verification), block records (every corruption
// is DataLoss), DiskTier (restart index, size bound, atomic files), RedisTier against a private
// redis-server (round trip, namespaced keys, TTL, off with a warning when killed and back on when
// it returns), and the TierWorker's fetch / write jobs.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "kv/block_record.h"
#include "kv/disk_tier.h"
#include "kv/host_tier.h"
#include "kv/redis_tier.h"
#include "kv/testing/redis_server.h"
#include "kv/testing/temp_dir.h"
#include "kv/tier_worker.h"

namespace kiln {
namespace {

std::vector<int32_t> Toks(int n, int32_t start) {
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.push_back(start + i);
  return t;
}

using testing::TempDir;

TEST(HostTierTest, EvictsLeastRecentlyUsedUnpinnedAndVerifiesHits) {
  std::vector<uint8_t> mem(3 * 8);
  HostTier host(mem.data(), 8, 3, 2);
  const BlockHash root = RootBlockHash("ns", "");
  std::vector<BlockHash> keys;
  std::vector<int64_t> recs;
  for (int i = 0; i < 3; ++i) {
    const auto t = Toks(2, 10 * i);
    keys.push_back(ChainBlockHash(root, t));
    const int64_t r = host.Reserve();
    ASSERT_GE(r, 0);
    ASSERT_TRUE(host.Publish(r, keys.back(), root, t));
    host.Unpin(r);
    recs.push_back(r);
  }
  ASSERT_TRUE(host.CheckInvariants().ok());
  EXPECT_EQ(host.Find(keys[1], Toks(2, 10), root), recs[1]);
  EXPECT_EQ(host.Find(keys[1], Toks(2, 11), root), -1);     // other tokens: a miss
  EXPECT_EQ(host.Find(keys[1], Toks(2, 10), keys[0]), -1);  // other parent: a miss
  host.Touch(recs[0]);                                      // LRU order now 1, 2, 0
  host.Pin(recs[1]);                                        // pinned: never evicted
  const int64_t r = host.Reserve();
  EXPECT_EQ(r, recs[2]);  // the least recently used unpinned record
  EXPECT_EQ(host.num_evictions(), 1);
  EXPECT_FALSE(host.Contains(keys[2]));
  // A duplicate key is not published twice; unpinning the unpublished record frees it.
  EXPECT_FALSE(host.Publish(r, keys[0], root, Toks(2, 0)));
  host.Unpin(r);
  EXPECT_EQ(host.Reserve(), r);  // free records come before evictions
  host.Unpin(r);
  host.Unpin(recs[1]);
  EXPECT_EQ(host.num_published(), 2);
  EXPECT_TRUE(host.CheckInvariants().ok());
}

TEST(BlockRecordTest, EveryCorruptionIsDataLoss) {
  const auto tokens = Toks(4, 100);
  const BlockHash parent = RootBlockHash("ns", "salt");
  const BlockRecordKey key{ChainBlockHash(parent, tokens), parent, 77, tokens};
  std::vector<uint8_t> payload(64);
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<uint8_t>(i * 3);
  std::vector<uint8_t> rec;
  EncodeBlockRecord(key, payload, &rec);
  ASSERT_EQ(rec.size(), static_cast<size_t>(BlockRecordHeaderBytes(4)) + payload.size());
  std::vector<uint8_t> out(64);
  ASSERT_TRUE(DecodeBlockRecord(rec, key, out).ok());
  EXPECT_EQ(out, payload);
  // Any flipped byte, any truncation, any other expectation: DataLoss, payload untouched.
  for (size_t i = 0; i < rec.size(); ++i) {
    auto bad = rec;
    bad[i] ^= 0x40;
    std::vector<uint8_t> o(64, 0xEE);
    const Status s = DecodeBlockRecord(bad, key, o);
    ASSERT_EQ(s.code(), StatusCode::kDataLoss) << "byte " << i;
  }
  for (size_t n : {size_t{0}, size_t{10}, rec.size() - 1}) {
    EXPECT_EQ(DecodeBlockRecord(std::span(rec.data(), n), key, out).code(), StatusCode::kDataLoss);
  }
  BlockRecordKey other = key;
  other.namespace_hash = 78;
  EXPECT_EQ(DecodeBlockRecord(rec, other, out).code(), StatusCode::kDataLoss);
  auto other_tokens = tokens;
  other_tokens[3] = 1;
  other = key;
  other.token_ids = other_tokens;
  EXPECT_EQ(DecodeBlockRecord(rec, other, out).code(), StatusCode::kDataLoss);
  std::vector<uint8_t> small(63);
  EXPECT_EQ(DecodeBlockRecord(rec, key, small).code(), StatusCode::kDataLoss);
}

// Regression: Open only checked that the directory exists, so an unwritable --disk-cache-dir was
// accepted and every Put failed while serving. Open probes a write, a rename and a delete.
TEST(DiskTierTest, UnwritableDirectoryIsAnIoErrorAtOpen) {
  // Exists, but no file can be created in it (even as root).
  for (const char* dir : {"/proc/self", "/sys/kernel"}) {
    if (!std::filesystem::is_directory(dir)) continue;
    auto disk = DiskTier::Open({dir, 1 << 20});
    ASSERT_FALSE(disk.ok()) << dir;
    EXPECT_EQ(disk.status().code(), StatusCode::kIOError) << disk.status().ToString();
    EXPECT_NE(disk.status().message().find(std::string(dir) + " is not writable"),
              std::string::npos)
        << disk.status().ToString();
  }
  TempDir tmp;
  if (::geteuid() != 0) {  // permissions bind everyone but root
    std::filesystem::permissions(
        tmp.path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
    auto disk = DiskTier::Open({tmp.path, 1 << 20});
    EXPECT_EQ(disk.status().code(), StatusCode::kIOError) << disk.status().ToString();
    std::filesystem::permissions(tmp.path, std::filesystem::perms::owner_all);
  }
  // A writable directory opens and keeps no probe file.
  auto disk = DiskTier::Open({tmp.path, 1 << 20});
  ASSERT_TRUE(disk.ok()) << disk.status().ToString();
  EXPECT_TRUE(std::filesystem::is_empty(tmp.path));
}

TEST(DiskTierTest, RestartIndexesRecordsAndSizeIsBoundedLru) {
  TempDir dir;
  std::vector<uint8_t> rec(1000, 7);
  BlockHash a{1, 2}, b{3, 4}, c{5, 6};
  {
    auto disk = DiskTier::Open({dir.path, 2500});
    ASSERT_TRUE(disk.ok()) << disk.status().ToString();
    ASSERT_TRUE((*disk)->Put(a, rec).ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ASSERT_TRUE((*disk)->Put(b, rec).ok());
    EXPECT_TRUE((*disk)->MayContain(a));
    EXPECT_FALSE((*disk)->MayContain(c));
  }
  std::ofstream(dir.path + "/" + c.Hex() + ".tmp") << "partial";  // a crashed write
  std::ofstream(dir.path + "/notes.txt") << "not ours";
  auto disk = DiskTier::Open({dir.path, 2500});
  ASSERT_TRUE(disk.ok());
  EXPECT_EQ((*disk)->num_records(), 2);
  EXPECT_FALSE(std::filesystem::exists(dir.path + "/" + c.Hex() + ".tmp"));
  std::vector<uint8_t> got;
  ASSERT_TRUE((*disk)->Get(a, &got).ok());  // a becomes most recently used
  EXPECT_EQ(got, rec);
  const StatusOr<bool> again = (*disk)->Put(a, rec);  // held already: nothing written
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(*again);
  ASSERT_TRUE((*disk)->Put(c, rec).ok());  // 3000 > 2500: evicts b (LRU), keeps a
  EXPECT_TRUE((*disk)->MayContain(a));
  EXPECT_FALSE((*disk)->MayContain(b));
  EXPECT_FALSE(std::filesystem::exists((*disk)->PathOf(b)));
  EXPECT_EQ((*disk)->Get(b, &got).code(), StatusCode::kNotFound);
  (*disk)->Remove(a);
  EXPECT_FALSE(std::filesystem::exists((*disk)->PathOf(a)));
  EXPECT_EQ(DiskTier::Open({"", 1}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(DiskTier::Open({dir.path, 0}).status().code(), StatusCode::kInvalidArgument);
  BlockHash parsed;
  EXPECT_TRUE(ParseBlockHashHex(c.Hex(), &parsed));
  EXPECT_EQ(parsed, c);
  EXPECT_FALSE(ParseBlockHashHex("xyz", &parsed));
}

TEST(RedisTierTest, RoundTripNamespacedKeysAndOffWhenKilledThenBackOn) {
  EXPECT_FALSE(RedisTierOptions{.url = "http://x"}.Validate().ok());
  EXPECT_FALSE(RedisTierOptions{.url = "redis://:99999"}.Validate().ok());

  testing::RedisServer server;
  std::string error;
  ASSERT_TRUE(server.Start(&error)) << error;
  RedisTierOptions o;
  o.url = server.url();
  o.namespace_hash = 0xABC;
  o.ttl_s = 100;
  o.retry_interval_s = 0.1;
  o.timeout_ms = 2000;  // generous: CI machines are shared
  auto tier = RedisTier::Create(o);
  ASSERT_TRUE(tier.ok());
  RedisTier& r = **tier;
  EXPECT_TRUE(r.enabled());
  EXPECT_NE(r.KeyOf({1, 2}).find("0000000000000abc:"), std::string::npos);
  std::vector<uint8_t> rec = {1, 2, 3, 0, 5};
  ASSERT_TRUE(r.Put({1, 2}, rec).ok());
  std::vector<uint8_t> got;
  ASSERT_TRUE(r.Get({1, 2}, &got).ok());
  EXPECT_EQ(got, rec);
  EXPECT_EQ(r.Get({9, 9}, &got).code(), StatusCode::kNotFound);
  // Another namespace (model / layout) does not see it.
  RedisTierOptions o2 = o;
  o2.namespace_hash = 0xDEF;
  auto other = RedisTier::Create(o2);
  ASSERT_TRUE(other.ok());
  EXPECT_EQ((*other)->Get({1, 2}, &got).code(), StatusCode::kNotFound);

  const int p = server.port();
  server.Kill();
  EXPECT_EQ(r.Get({1, 2}, &got).code(), StatusCode::kUnavailable);
  EXPECT_FALSE(r.enabled());
  EXPECT_FALSE(r.MayContain({1, 2}));
  EXPECT_EQ(r.Put({1, 2}, rec).status().code(), StatusCode::kUnavailable);
  // The server returns: after the retry interval the tier reconnects on its next use.
  ASSERT_TRUE(server.Start(&error, p)) << error;
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  EXPECT_TRUE(r.MayContain({1, 2}));
  EXPECT_EQ(r.Get({1, 2}, &got).code(), StatusCode::kNotFound);  // a fresh server
  EXPECT_TRUE(r.enabled());

  // The write budget per TTL window.
  RedisTierOptions small = o;
  small.max_bytes = 8;
  auto budget = RedisTier::Create(small);
  ASSERT_TRUE(budget.ok());
  EXPECT_TRUE((*budget)->Put({7, 7}, rec).ok());
  EXPECT_EQ((*budget)->Put({8, 8}, rec).status().code(), StatusCode::kResourceExhausted);
}

// Regression: redis://:secret@host:port was parsed as host ":secret@host", the password was
// logged with the url, and a NOAUTH reply was reported as "error reply".
TEST(RedisTierTest, UrlCredentialsAreParsedAndRedacted) {
  struct Case {
    const char* url;
    RedisUrl want;
  } cases[] = {
      {"redis://example:6380/2", {"example", 6380, 2, "", ""}},
      {"redis://:secret@cache.local:6380/3", {"cache.local", 6380, 3, "", "secret"}},
      {"redis://alice:p%40ss:w@rd@10.0.0.1", {"10.0.0.1", 6379, 0, "alice", "p@ss:w@rd"}},
  };
  for (const Case& c : cases) {
    RedisUrl u;
    ASSERT_TRUE(ParseRedisUrl(c.url, &u).ok()) << c.url;
    EXPECT_EQ(u.host, c.want.host) << c.url;
    EXPECT_EQ(u.port, c.want.port) << c.url;
    EXPECT_EQ(u.db, c.want.db) << c.url;
    EXPECT_EQ(u.user, c.want.user) << c.url;
    EXPECT_EQ(u.password, c.want.password) << c.url;  // %40 decoded; credentials end at the last @
  }
  RedisUrl u;
  const Status bad = ParseRedisUrl("redis://justsecret@host", &u);
  EXPECT_EQ(bad.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.message().find("justsecret"), std::string::npos) << bad.ToString();
  const Status no_host = ParseRedisUrl("redis://:secret@", &u);
  EXPECT_FALSE(no_host.ok());
  EXPECT_EQ(no_host.message().find("secret@"), std::string::npos) << no_host.ToString();
  EXPECT_EQ(ParseRedisUrl("redis://:bad%zz@h", &u).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(RedactRedisUrl("redis://:secret@h:1/2"), "redis://:***@h:1/2");
  EXPECT_EQ(RedactRedisUrl("redis://alice:secret@h"), "redis://alice:***@h");
  EXPECT_EQ(RedactRedisUrl("rediss://secret@h"), "rediss://***@h");
  EXPECT_EQ(RedactRedisUrl("redis://h:1"), "redis://h:1");
}

// Regression (same): a server with requirepass is used with AUTH; without the password (or with a
// wrong one) the tier is off and the warning carries Redis' reply, never the password.
TEST(RedisTierTest, PasswordProtectedServerIsUsedWithAuth) {
  testing::RedisServer server;
  std::string error;
  ASSERT_TRUE(server.Start(&error, 19631, "s3cret-pw")) << error;
  RedisTierOptions o;
  o.url = "redis://:s3cret-pw@127.0.0.1:19631";
  o.timeout_ms = 2000;  // generous: CI machines are shared
  o.retry_interval_s = 60;
  ::testing::internal::CaptureStderr();
  auto tier = RedisTier::Create(o);
  ASSERT_TRUE(tier.ok()) << tier.status().ToString();
  EXPECT_TRUE((*tier)->enabled());
  std::vector<uint8_t> rec = {4, 5, 6}, got;
  EXPECT_TRUE((*tier)->Put({1, 2}, rec).ok());
  EXPECT_TRUE((*tier)->Get({1, 2}, &got).ok());
  EXPECT_EQ(got, rec);
  EXPECT_EQ(server.DbSize(), 1);
  // The default user by name (Redis 6 ACL form of AUTH).
  RedisTierOptions named = o;
  named.url = "redis://default:s3cret-pw@127.0.0.1:19631";
  auto by_name = RedisTier::Create(named);
  ASSERT_TRUE(by_name.ok());
  EXPECT_TRUE((*by_name)->enabled());

  RedisTierOptions none = o;
  none.url = "redis://127.0.0.1:19631";
  auto no_auth = RedisTier::Create(none);
  ASSERT_TRUE(no_auth.ok());
  EXPECT_FALSE((*no_auth)->enabled());
  RedisTierOptions wrong = o;
  wrong.url = "redis://:wrong-pw@127.0.0.1:19631";
  auto wrong_auth = RedisTier::Create(wrong);
  ASSERT_TRUE(wrong_auth.ok());
  EXPECT_FALSE((*wrong_auth)->enabled());
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("NOAUTH"), std::string::npos) << log;
  EXPECT_NE(log.find("AUTH failed: WRONGPASS"), std::string::npos) << log;
  EXPECT_NE(log.find("redis://:***@127.0.0.1:19631"), std::string::npos) << log;
  EXPECT_EQ(log.find("s3cret-pw"), std::string::npos) << log;
  EXPECT_EQ(log.find("wrong-pw"), std::string::npos) << log;
}

TEST(RedisTierTest, SlowServerTurnsTheTierOff) {
  testing::RedisServer server;
  std::string error;
  ASSERT_TRUE(server.Start(&error)) << error;
  RedisTierOptions o;
  o.url = server.url();
  o.timeout_ms = 100;
  o.retry_interval_s = 60;
  auto tier = RedisTier::Create(o);
  ASSERT_TRUE(tier.ok());
  ASSERT_TRUE((*tier)->enabled());
  std::thread stall = server.Stall(1.0);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the server is asleep now
  std::vector<uint8_t> got;
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ((*tier)->Get({1, 1}, &got).code(), StatusCode::kUnavailable);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(700));
  EXPECT_FALSE((*tier)->enabled());
  EXPECT_EQ((*tier)->Get({1, 1}, &got).code(), StatusCode::kUnavailable);  // off: no wait
  stall.join();
}

TEST(RedisTierTest, UnreachableServerLeavesTheTierOffNotAnError) {
  RedisTierOptions o;
  o.url = "redis://127.0.0.1:1";
  o.timeout_ms = 50;
  auto tier = RedisTier::Create(o);
  ASSERT_TRUE(tier.ok());
  EXPECT_FALSE((*tier)->enabled());
  std::vector<uint8_t> got;
  EXPECT_EQ((*tier)->Get({1, 1}, &got).code(), StatusCode::kUnavailable);
}

TEST(TierWorkerTest, FetchStopsAtTheFirstMissAndRemovesCorruptRecords) {
  TempDir dir;
  const int bs = 2;
  const int64_t payload_bytes = 16;
  auto disk_or = DiskTier::Open({dir.path, 1 << 20});
  ASSERT_TRUE(disk_or.ok());
  DiskTier* disk = disk_or->get();
  std::vector<std::unique_ptr<KvTier>> tiers;
  tiers.push_back(std::move(disk_or).value());
  TierWorker worker({.block_size = bs, .record_bytes = payload_bytes, .namespace_hash = 5},
                    std::move(tiers));
  const BlockHash root = RootBlockHash("ns", "");
  std::vector<BlockHash> keys, parents;
  std::vector<int32_t> tokens;
  std::vector<std::vector<uint8_t>> payloads;
  BlockHash parent = root;
  for (int i = 0; i < 4; ++i) {
    const auto t = Toks(bs, 10 * i);
    tokens.insert(tokens.end(), t.begin(), t.end());
    parents.push_back(parent);
    keys.push_back(ChainBlockHash(parent, t));
    parent = keys.back();
    payloads.emplace_back(payload_bytes, static_cast<uint8_t>(i + 1));
  }
  // Write blocks 0, 1 and 3 (not 2).
  for (int i : {0, 1, 3}) {
    ASSERT_TRUE(worker.EnqueueWrite(
        {i, keys[i], parents[i], Toks(bs, 10 * i), payloads[static_cast<size_t>(i)].data()}));
  }
  std::vector<TierCompletion> done;
  for (int i = 0; i < 2000 && done.size() < 3; ++i) {
    worker.Poll(&done);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(done.size(), 3u);
  EXPECT_EQ(disk->num_records(), 3);
  // Regression: a write of a record the disk holds already wrote nothing but was counted stored.
  const int64_t stored = worker.Stats()[0].bytes_stored;
  EXPECT_EQ(stored, 3 * static_cast<int64_t>(std::filesystem::file_size(disk->PathOf(keys[0]))));
  ASSERT_TRUE(worker.EnqueueWrite({0, keys[0], parents[0], Toks(bs, 0), payloads[0].data()}));
  done.clear();
  for (int i = 0; i < 2000 && done.empty(); ++i) {
    worker.Poll(&done);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(worker.Stats()[0].bytes_stored, stored);
  std::vector<std::vector<uint8_t>> dst(4, std::vector<uint8_t>(payload_bytes, 0));
  auto fetch = [&](uint64_t id) {
    TierFetchJob job;
    job.id = id;
    job.keys = keys;
    job.parents = parents;
    job.token_ids = tokens;
    for (int i = 0; i < 4; ++i) {
      job.host_records.push_back(i);
      job.payloads.push_back(dst[static_cast<size_t>(i)].data());
    }
    worker.EnqueueFetch(std::move(job));
    std::vector<TierCompletion> c;
    for (int i = 0; i < 2000 && c.empty(); ++i) {
      worker.Poll(&c);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    EXPECT_EQ(c.size(), 1u);
    EXPECT_TRUE(c[0].is_fetch);
    EXPECT_EQ(c[0].fetch_id, id);
    EXPECT_EQ(c[0].sources, std::vector<int>(static_cast<size_t>(c[0].num_fetched), 0));
    return c[0].num_fetched;
  };
  EXPECT_EQ(fetch(1), 2);  // stops at block 2
  EXPECT_EQ(dst[0], payloads[0]);
  EXPECT_EQ(dst[1], payloads[1]);
  // Corrupt block 1 on disk: the fetch stops before it and removes the file.
  {
    std::fstream f(disk->PathOf(keys[1]), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(20);
    f.put('X');
  }
  EXPECT_EQ(fetch(2), 1);
  EXPECT_FALSE(disk->MayContain(keys[1]));
  const std::vector<TierStats> stats = worker.Stats();
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_EQ(stats[0].name, "disk");
  EXPECT_EQ(stats[0].errors, 1);
  EXPECT_EQ(stats[0].hit_tokens, 0);  // counted when a request uses a block (KvCacheManager)
  EXPECT_EQ(stats[0].bytes_loaded,
            3 * static_cast<int64_t>(std::filesystem::file_size(disk->PathOf(keys[0]))));
  EXPECT_GT(stats[0].bytes_stored, 0);
  EXPECT_EQ(worker.num_pending(), 0);
}

}  // namespace
}  // namespace kiln
