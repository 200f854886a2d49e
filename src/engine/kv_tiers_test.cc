// The tiered prefix cache end to end over the deterministic FakeBackend (whose KV values depend
// on every token and position, so a wrong load changes the output): every combination of host,
// disk and Redis tiers gives the greedy outputs of no tiers; a multi-turn chat whose working set is
// several times the device pool is served from the host tier; a restarted disk tier serves hits;
// corrupted records and a killed redis-server are survived; two engines share a prefix through
// Redis; aborting a loading request leaks nothing. Every harness checks the block invariants after
// every step and ExpectDrained at the end.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <random>

#include "engine/engine_test_util.h"
#include "engine/kv_tier_setup.h"
#include "kv/disk_tier.h"
#include "kv/redis_tier.h"
#include "kv/testing/redis_server.h"
#include "kv/testing/temp_dir.h"

namespace kiln {
namespace {

using testing::CoreHarness;
using testing::CoreHarnessOptions;
using testing::ExpectDrained;
using testing::RandomTokens;

constexpr int kBlock = 16;

using testing::TempDir;

struct TierConfig {
  bool host = false;
  std::string disk_dir;
  std::string redis_url;
  int copy_latency_polls = 0;
  int64_t device_blocks = 24;  // 384 tokens: the chat below needs several times that
};

std::unique_ptr<CoreHarness> MakeHarness(const TierConfig& t) {
  CoreHarnessOptions o;
  o.block_size = kBlock;
  o.num_blocks = t.device_blocks;
  o.max_num_batched_tokens = 256;
  o.max_num_seqs = 8;
  o.cache_namespace = "fake-model";
  const bool lower = !t.disk_dir.empty() || !t.redis_url.empty();
  o.host_records = t.host ? 256 : (lower ? 64 : 0);
  std::vector<std::unique_ptr<KvTier>> tiers;
  const uint64_t ns = Checksum64(o.cache_namespace.data(), o.cache_namespace.size());
  if (!t.disk_dir.empty()) {
    auto disk = DiskTier::Open({t.disk_dir, int64_t{64} << 20});
    KILN_CHECK_OK(disk.status());
    tiers.push_back(std::move(disk).value());
  }
  if (!t.redis_url.empty()) {
    RedisTierOptions r;
    r.url = t.redis_url;
    r.namespace_hash = ns;
    r.retry_interval_s = 0.2;
    r.timeout_ms = 2000;  // generous: CI machines are shared
    auto redis = RedisTier::Create(r);
    KILN_CHECK_OK(redis.status());
    tiers.push_back(std::move(redis).value());
  }
  auto h = std::make_unique<CoreHarness>(o, std::move(tiers));
  h->backend.set_copy_latency_polls(t.copy_latency_polls);
  return h;
}

const KvTierMetrics* Tier(const EngineMetrics& m, const std::string& name) {
  for (const KvTierMetrics& t : m.kv_tiers) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

// Every hit token counts for exactly one tier.
int64_t SumOfTierHits(const EngineMetrics& m) {
  int64_t sum = 0;
  for (const KvTierMetrics& t : m.kv_tiers) sum += t.hit_tokens;
  return sum;
}

int64_t NumFiles(const std::string& dir) {
  int64_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) n += e.is_regular_file() ? 1 : 0;
  return n;
}

struct ChatRun {
  std::map<std::string, std::vector<int32_t>> outputs;  // "c<conv>t<turn>" → generated ids
  std::map<std::string, std::vector<int32_t>> prompts;
  EngineMetrics metrics;
  int max_loading = 0;
};

// `convs` conversations of `turns` turns, round robin: each turn's prompt is the previous prompt,
// its answer and a new user message; all conversations' turn t run together.
ChatRun RunChat(CoreHarness& h, int convs, int turns,
                const std::function<void(int turn)>& before_turn = nullptr) {
  std::mt19937 rng(7);
  ChatRun run;
  std::vector<std::vector<int32_t>> history(static_cast<size_t>(convs));
  for (auto& hist : history) hist = RandomTokens(&rng, 40, 64);  // the system prompt
  for (int t = 0; t < turns; ++t) {
    if (before_turn) before_turn(t);
    for (int c = 0; c < convs; ++c) {
      auto& hist = history[static_cast<size_t>(c)];
      const auto user = RandomTokens(&rng, 12 + static_cast<int>(rng() % 20), 64);
      hist.insert(hist.end(), user.begin(), user.end());
      SamplingParams sp = CoreHarness::Greedy(10);
      sp.ignore_eos = true;
      const std::string id = "c" + std::to_string(c) + "t" + std::to_string(t);
      run.prompts[id] = hist;
      h.Add(id, hist, sp);
    }
    int steps = 0;
    while (h.core->has_work()) {
      EXPECT_LT(steps++, 100000);
      if (steps > 100000) break;
      h.Step();
      run.max_loading = std::max(run.max_loading, h.core->scheduler().num_loading());
    }
    for (int c = 0; c < convs; ++c) {
      const std::string id = "c" + std::to_string(c) + "t" + std::to_string(t);
      const auto& out = h.results[id].ids;
      run.outputs[id] = out;
      auto& hist = history[static_cast<size_t>(c)];
      hist.insert(hist.end(), out.begin(), out.end());
    }
  }
  run.metrics = h.core->metrics();
  return run;
}

TEST(KvTiersTest, EveryTierCombinationGivesTheOutputsOfNoTiers) {
  auto base_h = MakeHarness({});
  const ChatRun base = RunChat(*base_h, 8, 4);
  ExpectDrained(*base_h);
  TempDir dir;
  for (int mask = 1; mask < 4; ++mask) {
    for (int latency : {0, 3}) {
      SCOPED_TRACE("mask " + std::to_string(mask) + " latency " + std::to_string(latency));
      std::filesystem::remove_all(dir.path);
      TierConfig t;
      t.host = (mask & 1) != 0;
      if ((mask & 2) != 0) t.disk_dir = dir.path;
      t.copy_latency_polls = latency;
      auto h = MakeHarness(t);
      const ChatRun run = RunChat(*h, 8, 4);
      EXPECT_EQ(run.outputs, base.outputs);
      ExpectDrained(*h);
      EXPECT_GT(h->backend.num_blocks_copied(), 0);
      if (t.host) {
        EXPECT_GT(Tier(run.metrics, "host")->hit_tokens, 0);
        if (latency > 0) EXPECT_GT(run.max_loading, 0) << "no request waited in the loading state";
      }
      if (!t.disk_dir.empty()) EXPECT_GT(Tier(run.metrics, "disk")->bytes_stored, 0);
      EXPECT_EQ(SumOfTierHits(run.metrics), run.metrics.prefix_cache_hits);
    }
  }
}

// The working set (8 conversations of up to ~400 tokens) is several times the device pool (384
// tokens): without the host tier most of every prompt is recomputed, with it most is loaded.
TEST(KvTiersTest, ChatLargerThanTheDevicePoolIsServedFromTheHostTier) {
  auto plain = MakeHarness({});
  const ChatRun without = RunChat(*plain, 8, 6);
  auto tiered = MakeHarness({.host = true});
  const ChatRun with = RunChat(*tiered, 8, 6);
  EXPECT_EQ(with.outputs, without.outputs);
  const KvTierMetrics* host = Tier(with.metrics, "host");
  ASSERT_NE(host, nullptr);
  const int64_t queries = with.metrics.prefix_cache_queries;
  EXPECT_GT(queries, 4 * tiered->core->kv_cache().num_blocks() * kBlock);
  EXPECT_GT(host->hit_tokens, 0);
  EXPECT_GT(with.metrics.prefix_cache_hits, 2 * without.metrics.prefix_cache_hits);
  EXPECT_GT(with.metrics.prefix_cache_hits * 2, queries) << "hit rate below 50%";
  EXPECT_GT(host->bytes_loaded, 0);
  EXPECT_GT(host->bytes_stored, 0);
  EXPECT_GT(host->num_loads, 0);
  EXPECT_GT(host->predicted_block_load_seconds, 0.0);
  ExpectDrained(*plain);
  ExpectDrained(*tiered);
}

// Replays the last turn of a finished chat on a fresh engine (empty device pool and host tier).
ChatRun Replay(CoreHarness& h, const ChatRun& first, int turn) {
  ChatRun run;
  for (const auto& [id, prompt] : first.prompts) {
    if (id.substr(id.find('t') + 1) != std::to_string(turn)) continue;
    SamplingParams sp = CoreHarness::Greedy(10);
    sp.ignore_eos = true;
    h.Add(id, prompt, sp);
    run.prompts[id] = prompt;
  }
  h.RunUntilIdle();
  for (const auto& [id, prompt] : run.prompts) run.outputs[id] = h.results[id].ids;
  run.metrics = h.core->metrics();
  return run;
}

std::map<std::string, std::vector<int32_t>> OutputsOfTurn(const ChatRun& run, int turn) {
  std::map<std::string, std::vector<int32_t>> out;
  for (const auto& [id, ids] : run.outputs) {
    if (id.substr(id.find('t') + 1) == std::to_string(turn)) out[id] = ids;
  }
  return out;
}

// A chat of 4 conversations × 3 turns on an engine with a disk tier in `dir`, shut down after.
ChatRun ChatOnDisk(const std::string& dir) {
  auto h = MakeHarness({.disk_dir = dir});
  ChatRun run = RunChat(*h, 4, 3);
  ExpectDrained(*h);
  return run;
}

TEST(KvTiersTest, RestartedDiskTierServesHits) {
  TempDir dir;
  const ChatRun first = ChatOnDisk(dir.path);
  auto h = MakeHarness({.disk_dir = dir.path});  // a restart: nothing on the device or host
  const ChatRun again = Replay(*h, first, 2);
  EXPECT_EQ(again.outputs, OutputsOfTurn(first, 2));
  const KvTierMetrics* disk = Tier(again.metrics, "disk");
  ASSERT_NE(disk, nullptr);
  EXPECT_GT(disk->hit_tokens, 0);
  EXPECT_GT(disk->bytes_loaded, 0);
  EXPECT_EQ(disk->errors, 0);
  ExpectDrained(*h);
}

// Regression: blocks fetched from disk counted as hits of the disk tier (when fetched) and again
// of the host tier (when loaded), so per-tier hits summed to more than prefix_cache_hits; the
// device tier reported no capacity; and a write of a record the disk held already counted as
// bytes stored.
TEST(KvTiersTest, RestartedTierMetricsAddUp) {
  TempDir dir;
  const ChatRun first = ChatOnDisk(dir.path);
  const int64_t files_before = NumFiles(dir.path);
  ASSERT_GT(files_before, 0);
  int64_t file_bytes = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path)) {
    file_bytes = static_cast<int64_t>(e.file_size());
  }
  auto h = MakeHarness({.host = true, .disk_dir = dir.path});  // a restart
  const ChatRun again = Replay(*h, first, 2);
  EXPECT_EQ(again.outputs, OutputsOfTurn(first, 2));
  ExpectDrained(*h);
  const EngineMetrics m = h->core->metrics();
  const KvTierMetrics* disk = Tier(m, "disk");
  ASSERT_NE(disk, nullptr);
  EXPECT_GT(disk->hit_tokens, 0);
  EXPECT_GT(m.prefix_cache_hits, 0);
  EXPECT_EQ(SumOfTierHits(m), m.prefix_cache_hits);
  EXPECT_LE(disk->hit_tokens, disk->query_tokens);
  // Only records that were not on disk yet were written, and counted.
  EXPECT_EQ(disk->bytes_stored, (NumFiles(dir.path) - files_before) * file_bytes);
  const KvTierMetrics* device = Tier(m, "device");
  ASSERT_NE(device, nullptr);
  EXPECT_EQ(device->capacity_bytes, 24 * h->backend.kv_block_record_bytes());
  EXPECT_GT(device->used_bytes, 0);  // cached blocks
  EXPECT_LE(device->used_bytes, device->capacity_bytes);
}

TEST(KvTiersTest, CorruptOrTruncatedDiskRecordsAreMissesNotWrongKv) {
  TempDir dir;
  const ChatRun first = ChatOnDisk(dir.path);
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path)) {
    const std::string p = e.path().string();
    if (++n % 3 == 0) {  // truncate
      std::filesystem::resize_file(p, std::filesystem::file_size(p) / 2);
    } else if (n % 3 == 1) {  // flip one byte of the payload (the last byte of the file)
      std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
      f.seekg(-1, std::ios::end);
      char c = 0;
      f.get(c);
      f.seekp(-1, std::ios::end);
      f.put(static_cast<char>(c ^ 0x5A));
    }
  }
  ASSERT_GT(n, 6);
  auto h = MakeHarness({.disk_dir = dir.path});
  const ChatRun again = Replay(*h, first, 2);
  EXPECT_EQ(again.outputs, OutputsOfTurn(first, 2));
  EXPECT_GT(Tier(again.metrics, "disk")->errors, 0);
  ExpectDrained(*h);
}

TEST(KvTiersTest, AbortWhileLoadingLeaksNoBlock) {
  auto h = MakeHarness({.host = true, .copy_latency_polls = 4, .device_blocks = 16});
  std::mt19937 rng(3);
  const auto prompt = RandomTokens(&rng, 100, 64);
  h->Add("a", prompt, CoreHarness::Greedy(4));
  h->RunUntilIdle();
  // Push a's blocks out of the device pool (they stay on the host).
  h->Add("b", RandomTokens(&rng, 200, 64), CoreHarness::Greedy(4));
  h->RunUntilIdle();
  auto again = prompt;
  again.push_back(5);
  h->Add("c", again, CoreHarness::Greedy(4));
  for (int i = 0; i < 50 && h->core->scheduler().num_loading() == 0; ++i) h->Step();
  ASSERT_EQ(h->core->scheduler().num_loading(), 1);
  EXPECT_TRUE(h->Abort("c"));
  h->RunUntilIdle();
  ExpectDrained(*h);
  EXPECT_EQ(h->results["c"].final_output.finish_reason, FinishReason::kAbort);
}

// Regression: KvCopyDone could not report an error, so a copy that failed on the device counted
// as done. A failed store must publish nothing (no host record, no disk file); the request that
// computed the blocks is unaffected.
TEST(KvTiersTest, FailedStorePublishesNothing) {
  for (int latency : {0, 3}) {
    SCOPED_TRACE("latency " + std::to_string(latency));
    TempDir dir;
    auto h = MakeHarness({.host = true, .disk_dir = dir.path, .copy_latency_polls = latency});
    h->backend.set_fail_copies(KvCopyDirection::kDeviceToHost, true);
    std::mt19937 rng(5);
    const auto prompt = RandomTokens(&rng, 100, 64);
    h->Add("a", prompt, CoreHarness::Greedy(4));
    h->RunUntilIdle();
    ExpectDrained(*h);
    EXPECT_EQ(h->results["a"].final_output.finish_reason, FinishReason::kLength);
    EXPECT_GT(h->backend.num_failed_copies(), 0);
    EXPECT_EQ(h->core->kv_cache().host_tier()->num_published(), 0);
    EXPECT_TRUE(std::filesystem::is_empty(dir.path)) << "a failed store reached the disk tier";
    const EngineMetrics m = h->core->metrics();
    EXPECT_GT(Tier(m, "host")->errors, 0);
    EXPECT_EQ(Tier(m, "host")->bytes_stored, 0);
    EXPECT_EQ(Tier(m, "disk")->bytes_stored, 0);
  }
}

// Regression (same bug, load side): a failed load caches nothing (the destination blocks hold
// garbage that a later hit would read) and leaks no block or host record; the request recomputes
// its prompt without the cache and answers as an engine without tiers would (it used to fail).
TEST(KvTiersTest, FailedLoadRecomputesTheRequestAndCachesNothing) {
  std::mt19937 rng(3);
  const auto prompt = RandomTokens(&rng, 100, 64);
  const auto other = RandomTokens(&rng, 200, 64);
  auto again = prompt;
  again.push_back(5);
  auto plain = MakeHarness({.device_blocks = 16});
  plain->Add("d", again, CoreHarness::Greedy(4));
  plain->RunUntilIdle();
  for (int latency : {0, 3}) {
    SCOPED_TRACE("latency " + std::to_string(latency));
    auto h = MakeHarness({.host = true, .copy_latency_polls = latency, .device_blocks = 16});
    h->Add("a", prompt, CoreHarness::Greedy(4));
    h->RunUntilIdle();
    // Push a's blocks out of the device pool (they stay on the host).
    h->Add("b", other, CoreHarness::Greedy(4));
    h->RunUntilIdle();
    h->backend.set_fail_copies(KvCopyDirection::kHostToDevice, true);
    const int64_t hits_before = h->core->metrics().prefix_cache_hits;
    h->Add("c", again, CoreHarness::Greedy(4));
    h->RunUntilIdle();
    ExpectDrained(*h);
    // Its lookup counts as a miss: nothing of the hit was used (it counted as a 96-token hit).
    EXPECT_EQ(h->core->metrics().prefix_cache_hits, hits_before);
    const RequestOutput& c = h->results["c"].final_output;
    EXPECT_EQ(c.finish_reason, plain->results["d"].final_output.finish_reason);
    EXPECT_TRUE(c.error.ok()) << c.error.ToString();
    EXPECT_EQ(h->results["c"].ids, plain->results["d"].ids);
    EXPECT_EQ(c.usage.cached_tokens, 0);
    EXPECT_GT(h->backend.num_failed_copies(), 0);
    EXPECT_GT(Tier(h->core->metrics(), "host")->errors, 0);
    // Nothing of the failed load was cached on the device: the same prompt again (loads working)
    // gives the output of an engine without tiers.
    h->backend.set_fail_copies(KvCopyDirection::kHostToDevice, false);
    h->Add("d", again, CoreHarness::Greedy(4));
    h->RunUntilIdle();
    EXPECT_EQ(h->results["d"].ids, plain->results["d"].ids);
    ExpectDrained(*h);
  }
}

// An in-memory lower tier whose reads can be held (a stalled disk or network): shared state, so a
// second engine sees what the first stored.
struct StallingStore {
  std::mutex mu;
  std::condition_variable cv;
  bool stall = false;
  int gets_waiting = 0;
  std::map<std::string, std::vector<uint8_t>> records;
};

class StallingTier final : public KvTier {
 public:
  explicit StallingTier(std::shared_ptr<StallingStore> store) : store_(std::move(store)) {}
  const std::string& name() const override { return name_; }
  StatusOr<bool> Put(const BlockHash& key, std::span<const uint8_t> record) override {
    std::lock_guard<std::mutex> lock(store_->mu);
    store_->records[Key(key)].assign(record.begin(), record.end());
    return true;
  }
  Status Get(const BlockHash& key, std::vector<uint8_t>* record) override {
    std::unique_lock<std::mutex> lock(store_->mu);
    ++store_->gets_waiting;
    store_->cv.wait(lock, [&] { return !store_->stall; });
    --store_->gets_waiting;
    auto it = store_->records.find(Key(key));
    if (it == store_->records.end()) return Status::NotFound("no such record");
    *record = it->second;
    return Status::Ok();
  }
  void Remove(const BlockHash& key) override {
    std::lock_guard<std::mutex> lock(store_->mu);
    store_->records.erase(Key(key));
  }
  bool MayContain(const BlockHash& key) const override {
    std::lock_guard<std::mutex> lock(store_->mu);
    return store_->records.count(Key(key)) != 0;
  }
  void FillStats(TierStats* stats) const override { stats->capacity_bytes = 1 << 30; }

 private:
  static std::string Key(const BlockHash& k) {
    return std::string(reinterpret_cast<const char*>(&k), sizeof(k));
  }
  std::shared_ptr<StallingStore> store_;
  std::string name_ = "stalling";
};

// Regression: a request waited for its lower-tier fetch however long it took, so a stalled disk
// or Redis read held it (and everything queued behind it) indefinitely. Past fetch_timeout_s it
// runs with what the upper tiers hold, answering as a cold engine does; the fetch still lands in
// the host tier, and a later request hits it there.
TEST(KvTiersTest, StalledLowerTierFetchDoesNotHoldTheRequest) {
  auto store = std::make_shared<StallingStore>();
  std::mt19937 rng(17);
  const auto prompt = RandomTokens(&rng, 100, 64);
  auto make = [&](double fetch_timeout_s) {
    CoreHarnessOptions o;
    o.block_size = kBlock;
    o.num_blocks = 64;
    o.max_num_seqs = 8;
    o.cache_namespace = "fake-model";
    o.host_records = 64;
    o.fetch_timeout_s = fetch_timeout_s;
    std::vector<std::unique_ptr<KvTier>> tiers;
    tiers.push_back(std::make_unique<StallingTier>(store));
    return std::make_unique<CoreHarness>(o, std::move(tiers));
  };
  std::vector<int32_t> cold;
  {
    auto first = make(0.05);  // computes the prompt and writes its blocks through to the store
    first->Add("a", prompt, CoreHarness::Greedy(4));
    first->RunUntilIdle();
    cold = first->results["a"].ids;
    ExpectDrained(*first);
  }
  ASSERT_GE(store->records.size(), 6u);
  auto h = make(0.05);  // a fresh engine: only the store holds the prefix
  {
    std::lock_guard<std::mutex> lock(store->mu);
    store->stall = true;
  }
  const auto t0 = std::chrono::steady_clock::now();
  h->Add("b", prompt, CoreHarness::Greedy(4));
  while (h->results["b"].num_finals == 0) {
    ASSERT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20)) << "b is held";
    h->Step();
  }
  EXPECT_EQ(h->results["b"].ids, cold);
  EXPECT_EQ(h->results["b"].final_output.usage.cached_tokens, 0);
  EXPECT_EQ(h->core->metrics().kv_fetch_timeouts, 1);
  {
    std::lock_guard<std::mutex> lock(store->mu);
    EXPECT_EQ(store->gets_waiting, 1);  // the fetch is still held
    store->stall = false;
  }
  store->cv.notify_all();
  h->RunUntilIdle();  // the fetch completes into the host tier
  // Push b's blocks out of the device pool so that the next hit comes from the host.
  for (int i = 0; i < 4; ++i) {
    h->Add("x" + std::to_string(i), RandomTokens(&rng, 200, 64), CoreHarness::Greedy(2));
    h->RunUntilIdle();
  }
  h->Add("c", prompt, CoreHarness::Greedy(4));
  h->RunUntilIdle();
  EXPECT_EQ(h->results["c"].ids, cold);
  EXPECT_GT(h->results["c"].final_output.usage.cached_tokens, 0);
  ExpectDrained(*h);

  // A timeout of 0: the request never waits and nothing counts as timed out; the fetch still
  // runs (held here) and lands in the host tier once released.
  auto zero = make(0);
  {
    std::lock_guard<std::mutex> lock(store->mu);
    store->stall = true;
  }
  zero->Add("z", prompt, CoreHarness::Greedy(4));
  for (int i = 0; i < 1000 && zero->results["z"].num_finals == 0; ++i) zero->Step();
  EXPECT_EQ(zero->results["z"].ids, cold);
  EXPECT_EQ(zero->core->metrics().kv_fetch_timeouts, 0);
  {
    std::lock_guard<std::mutex> lock(store->mu);
    store->stall = false;
  }
  store->cv.notify_all();
  zero->RunUntilIdle();
  ExpectDrained(*zero);
}

// Regression: n = 8 sequences of one prompt stored each block once per sequence that computed it
// in the same step (here the 256-token budget computes the prompt for three of them at once).
TEST(KvTiersTest, SequencesOfOnePromptInOneStepStoreEachBlockOnce) {
  auto h = MakeHarness({.host = true, .device_blocks = 128});
  std::mt19937 rng(11);
  const auto prompt = RandomTokens(&rng, 100, 64);
  for (int i = 0; i < 8; ++i) {
    SamplingParams sp = CoreHarness::Greedy(4);
    sp.ignore_eos = true;
    h->Add("n" + std::to_string(i), prompt, sp);
  }
  h->RunUntilIdle();
  ExpectDrained(*h);
  // 103 computed tokens (identical greedy outputs): 6 full blocks, each copied to the host once.
  EXPECT_EQ(h->core->kv_cache().host_tier()->num_published(), 6);
  EXPECT_EQ(h->backend.num_blocks_copied(), 6);
  EXPECT_EQ(Tier(h->core->metrics(), "host")->dropped_writes, 0);
}

TEST(KvTiersTest, TwoEnginesShareAPrefixThroughRedis) {
  testing::RedisServer redis;
  std::string error;
  ASSERT_TRUE(redis.Start(&error)) << error;
  ChatRun first;
  {
    auto a = MakeHarness({.redis_url = redis.url()});
    first = RunChat(*a, 4, 2);
    ExpectDrained(*a);
  }
  EXPECT_GT(redis.DbSize(), 0);
  auto b = MakeHarness({.host = true, .redis_url = redis.url()});  // another replica
  const ChatRun again = Replay(*b, first, 1);
  EXPECT_EQ(again.outputs, OutputsOfTurn(first, 1));
  const KvTierMetrics* r = Tier(again.metrics, "redis");
  ASSERT_NE(r, nullptr);
  EXPECT_GT(r->hit_tokens, 0);
  EXPECT_EQ(r->errors, 0);
  EXPECT_EQ(SumOfTierHits(again.metrics), again.metrics.prefix_cache_hits);
  ExpectDrained(*b);
}

TEST(KvTiersTest, KilledRedisServerIsSurvivedWithCorrectOutputs) {
  auto base_h = MakeHarness({});
  const ChatRun base = RunChat(*base_h, 6, 4);
  testing::RedisServer redis;
  std::string error;
  ASSERT_TRUE(redis.Start(&error)) << error;
  auto h = MakeHarness({.host = true, .redis_url = redis.url()});
  // The server dies (SIGKILL) after the second turn; the engine goes on without it.
  const ChatRun run = RunChat(*h, 6, 4, [&](int turn) {
    if (turn == 2) {
      EXPECT_GT(redis.DbSize(), 0);
      redis.Kill();
    }
  });
  EXPECT_EQ(run.outputs, base.outputs);
  const KvTierMetrics* r = Tier(run.metrics, "redis");
  ASSERT_NE(r, nullptr);
  EXPECT_FALSE(r->enabled);
  EXPECT_GT(r->bytes_stored, 0);
  ExpectDrained(*h);
}

// SetUpKvTiers over a backend that only has block transfers: Llama-3-8B-sized records (2 MiB:
// 32 layers × K, V × 16 tokens × 8 heads × 128 × bf16) whose host pool is counted, not allocated.
class RecordOnlyBackend final : public Backend {
 public:
  const ModelConfig& config() const override { return config_; }
  int block_size() const override { return 16; }
  int64_t num_kv_blocks() const override { return 1024; }
  Status Forward(const ForwardBatch&) override { return Status::Unimplemented("setup only"); }
  Status SampleAsync(std::span<const SamplingRow>) override {
    return Status::Unimplemented("setup only");
  }
  bool SampleReady() override { return true; }
  Status WaitSample(std::vector<SampleResult>*) override {
    return Status::Unimplemented("setup only");
  }
  Status GetLogits(std::vector<float>*) override { return Status::Unimplemented("setup only"); }
  Status GetHidden(std::vector<float>*) override { return Status::Unimplemented("setup only"); }
  int64_t kv_block_record_bytes() const override { return int64_t{2} << 20; }
  std::string kv_record_layout() const override { return "test 2 MiB records"; }
  Status AllocateHostKvPool(int64_t num_records) override {
    allocated_records = num_records;
    return Status::Ok();
  }

  int64_t allocated_records = 0;

 private:
  ModelConfig config_;
};

EngineOptions SetupOptions() {
  EngineOptions o;
  o.model.model_path = "setup-test-model";
  o.model.load_format = "dummy";
  o.cache.block_size = 16;
  return o;
}

constexpr int kLongContext = 131072;  // 8192 blocks: two longest prompts are 16384 records, 32 GiB

// Regression: with a disk or Redis tier, host records were raised to two longest prompts'
// blocks whatever --cpu-offload-gb said (Llama-8B at 128k: 32 GiB pinned). The given size is
// honoured; without one, the staging pool is bounded by kMaxStagingBytes.
TEST(KvTierSetupTest, CpuOffloadSizeIsHonouredAndStagingIsBounded) {
  TempDir dir;
  {
    RecordOnlyBackend backend;
    EngineOptions o = SetupOptions();
    o.cache.cpu_offload_bytes = int64_t{4} << 30;
    o.cache.disk_cache_dir = dir.path;
    auto setup = SetUpKvTiers(o, &backend, kLongContext);
    ASSERT_TRUE(setup.ok()) << setup.status().ToString();
    EXPECT_EQ(setup->host_records, 2048);  // 4 GiB of 2 MiB records, not 16384
    EXPECT_EQ(backend.allocated_records, 2048);
    EXPECT_EQ(setup->lower_tiers.size(), 1u);
  }
  {
    RecordOnlyBackend backend;
    EngineOptions o = SetupOptions();
    o.cache.disk_cache_dir = dir.path;  // no host tier asked for: a staging pool
    auto setup = SetUpKvTiers(o, &backend, kLongContext);
    ASSERT_TRUE(setup.ok()) << setup.status().ToString();
    EXPECT_EQ(setup->host_records * backend.kv_block_record_bytes(), kMaxStagingBytes);
    EXPECT_EQ(backend.allocated_records, setup->host_records);
  }
  {
    RecordOnlyBackend backend;
    EngineOptions o = SetupOptions();
    o.cache.disk_cache_dir = dir.path;
    auto setup = SetUpKvTiers(o, &backend, 2048);  // short context: two prompts' blocks, >= 64
    ASSERT_TRUE(setup.ok()) << setup.status().ToString();
    EXPECT_EQ(setup->host_records, 256);
  }
  {
    RecordOnlyBackend backend;
    EngineOptions o = SetupOptions();
    o.cache.cpu_offload_bytes = int64_t{6} << 20;  // host tier alone: exactly 3 records
    auto setup = SetUpKvTiers(o, &backend, kLongContext);
    ASSERT_TRUE(setup.ok()) << setup.status().ToString();
    EXPECT_EQ(setup->host_records, 3);
    EXPECT_TRUE(setup->lower_tiers.empty());
  }
}

// Regression: a --cpu-offload-gb beyond the machine's memory aborted the CPU backend with an
// uncaught std::bad_alloc. It is refused before anything is allocated, naming the flag.
TEST(KvTierSetupTest, HostTierLargerThanPhysicalMemoryIsRefused) {
  const int64_t physical = PhysicalMemoryBytes();
  ASSERT_GT(physical, 0);
  RecordOnlyBackend backend;
  EngineOptions o = SetupOptions();
  o.cache.cpu_offload_bytes = 2 * physical;
  auto setup = SetUpKvTiers(o, &backend, 4096);
  ASSERT_FALSE(setup.ok());
  EXPECT_EQ(setup.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(setup.status().message().find("--cpu-offload-gb"), std::string::npos)
      << setup.status().ToString();
  EXPECT_NE(setup.status().message().find("physical memory"), std::string::npos)
      << setup.status().ToString();
  EXPECT_EQ(backend.allocated_records, 0);
}

// Regression: an unwritable --disk-cache-dir was accepted (every write failed while serving).
TEST(KvTierSetupTest, UnwritableDiskCacheDirIsAnError) {
  RecordOnlyBackend backend;
  EngineOptions o = SetupOptions();
  o.cache.disk_cache_dir = "/proc/self";
  auto setup = SetUpKvTiers(o, &backend, 4096);
  ASSERT_FALSE(setup.ok());
  EXPECT_EQ(setup.status().code(), StatusCode::kIOError) << setup.status().ToString();
  EXPECT_NE(setup.status().message().find("not writable"), std::string::npos)
      << setup.status().ToString();
}

}  // namespace
}  // namespace kiln
