// The tiered prefix cache on the real CPU backend (stories260K, float32): a multi-turn chat whose
// working set is several times the device KV pool (16 blocks × 16 tokens) gives the same greedy
// outputs with every combination of host, disk and Redis tiers as with none; with the host tier
// the metrics show host hits; a second engine (a "replica") over the same disk directory or Redis
// serves the chat's prefixes from there. Every engine's invariants are checked at the end of each
// run (no block in use, ref counts == block tables + transfer pins).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <random>
#include <thread>

#include "engine/engine_loop.h"
#include "kiln/engine.h"
#include "kv/testing/redis_server.h"
#include "kv/testing/temp_dir.h"
#include "model/test_data.h"

namespace kiln {
namespace {

using testing::TempDir;

struct Tiers {
  bool host = false;
  std::string disk;
  std::string redis;
};

std::unique_ptr<Engine> MakeEngine(const Tiers& t) {
  EngineOptions o;
  o.model.model_path = testing::SharedPath("models/stories260K/hf");
  o.device.num_threads = 1;
  o.cache.block_size = 16;
  o.cache.num_blocks = 16;  // 256 tokens: the chat below needs several times that
  o.scheduler.max_num_seqs = 4;
  o.scheduler.max_num_batched_tokens = 256;
  o.scheduler.max_model_len = 256;
  if (t.host) o.cache.cpu_offload_bytes = int64_t{64} << 20;
  o.cache.disk_cache_dir = t.disk;
  o.cache.redis_url = t.redis;
  o.cache.redis_timeout_ms = 2000;  // generous: CI machines are shared
  auto e = Engine::Create(o);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return e.ok() ? std::move(e).value() : nullptr;
}

using Outputs = std::map<std::string, std::vector<int32_t>>;

// 6 conversations × `turns` turns; each turn's prompt = the previous prompt, its answer and a new
// user message (all conversations' turn t are submitted together). Turns before `first_turn` are
// not run: their answers are taken from `reference`.
Outputs Chat(Engine* engine, int turns, int first_turn = 0, const Outputs* reference = nullptr) {
  std::mt19937 rng(11);
  std::vector<std::vector<int32_t>> hist(6);
  for (auto& h : hist) {
    h.push_back(1);  // BOS
    for (int i = 0; i < 47; ++i) h.push_back(static_cast<int32_t>(3 + rng() % 500));
  }
  Outputs out;
  for (int t = 0; t < turns; ++t) {
    std::vector<std::unique_ptr<RequestStream>> streams;
    for (auto& h : hist) {
      for (int i = 0; i < 12; ++i) h.push_back(static_cast<int32_t>(3 + rng() % 500));
      Request r;
      r.prompt_token_ids = h;
      r.sampling.temperature = 0.0f;
      r.sampling.max_tokens = 8;
      r.sampling.ignore_eos = true;
      if (t >= first_turn) {
        auto s = engine->Submit(std::move(r));
        EXPECT_TRUE(s.ok()) << s.status().ToString();
        streams.push_back(std::move(s).value());
      } else {
        streams.push_back(nullptr);
      }
    }
    for (size_t c = 0; c < hist.size(); ++c) {
      std::vector<int32_t> ids;
      if (streams[c] != nullptr) {
        RequestOutput o;
        while (streams[c]->Next(&o))
          ids.insert(ids.end(), o.new_token_ids.begin(), o.new_token_ids.end());
      }
      const std::string id = "c" + std::to_string(c) + "t" + std::to_string(t);
      if (streams[c] == nullptr) ids = reference->at(id);
      out[id] = ids;
      hist[c].insert(hist[c].end(), ids.begin(), ids.end());
    }
  }
  return out;
}

const KvTierMetrics* Tier(const EngineMetrics& m, const std::string& name) {
  for (const KvTierMetrics& t : m.kv_tiers) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

void ExpectNoLeaks(Engine* engine) {
  // Transfers finish asynchronously: the engine keeps stepping until none is in flight.
  for (int i = 0; i < 200 && engine->Metrics().num_kv_blocks_used != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(engine->Metrics().num_kv_blocks_used, 0);
  const Status s = Engine::Impl::CheckInvariants(engine);
  EXPECT_TRUE(s.ok()) << s.ToString();
}

TEST(KvTiersCpuTest, GreedyOutputsAreIdenticalWithEveryTierCombination) {
  auto plain = MakeEngine({});
  ASSERT_NE(plain, nullptr);
  const Outputs want = Chat(plain.get(), 4);
  const EngineMetrics plain_m = plain->Metrics();
  ExpectNoLeaks(plain.get());
  testing::RedisServer redis;
  std::string error;
  ASSERT_TRUE(redis.Start(&error)) << error;
  for (int mask = 1; mask < 8; ++mask) {
    SCOPED_TRACE("tiers mask " + std::to_string(mask));
    TempDir dir;
    Tiers t;
    t.host = (mask & 1) != 0;
    if ((mask & 2) != 0) t.disk = dir.path;
    if ((mask & 4) != 0) t.redis = redis.url();
    auto e = MakeEngine(t);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(Chat(e.get(), 4), want);
    const EngineMetrics m = e->Metrics();
    if (t.host) {
      // The working set (6 × ~100-200 tokens) is several times the 256-token device pool.
      const KvTierMetrics* host = Tier(m, "host");
      ASSERT_NE(host, nullptr);
      EXPECT_GT(host->hit_tokens, 0);
      EXPECT_GT(host->bytes_loaded, 0);
      EXPECT_GT(m.prefix_cache_hits, 2 * plain_m.prefix_cache_hits);
      std::printf(
          "tiers mask %d: prefix hits %lld / %lld prompt tokens (host %lld; no tiers: "
          "%lld), host loads %lld bytes in %.3f ms\n",
          mask, static_cast<long long>(m.prefix_cache_hits),
          static_cast<long long>(m.prefix_cache_queries), static_cast<long long>(host->hit_tokens),
          static_cast<long long>(plain_m.prefix_cache_hits),
          static_cast<long long>(host->bytes_loaded), host->load_seconds * 1e3);
    }
    ExpectNoLeaks(e.get());
    e->Shutdown(false);
  }
}

// A second engine (as a restarted server, or another replica) serves the last turn's prefixes from
// the disk directory or from Redis, with the first engine's outputs.
TEST(KvTiersCpuTest, ReplicaServesPrefixesFromDiskAndRedis) {
  testing::RedisServer redis;
  std::string error;
  ASSERT_TRUE(redis.Start(&error)) << error;
  TempDir dir;
  Outputs want;
  {
    auto a = MakeEngine({.disk = dir.path, .redis = redis.url()});
    ASSERT_NE(a, nullptr);
    want = Chat(a.get(), 3);
    ExpectNoLeaks(a.get());
  }
  for (const Tiers& t : {Tiers{.disk = dir.path}, Tiers{.host = true, .redis = redis.url()}}) {
    const std::string name = t.disk.empty() ? "redis" : "disk";
    SCOPED_TRACE(name);
    auto b = MakeEngine(t);
    ASSERT_NE(b, nullptr);
    Outputs got = Chat(b.get(), 3, /*first_turn=*/2, &want);
    for (auto& [id, ids] : got) {
      if (id.back() == '2') EXPECT_EQ(ids, want[id]) << id;
    }
    const KvTierMetrics* tier = Tier(b->Metrics(), name);
    ASSERT_NE(tier, nullptr);
    EXPECT_GT(tier->hit_tokens, 0);
    ExpectNoLeaks(b.get());
  }
}

}  // namespace
}  // namespace kiln
