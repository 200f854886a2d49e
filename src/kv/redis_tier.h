// RedisTier: block records (block_record.h) in a Redis server that several kiln replicas share, so
// a prefix prefilled on one replica is a hit on another. Keys are
//   <key_prefix><namespace hash hex>:<block hash hex>
// where the namespace hash covers the model, dtype, block size and KV layout; values are whole
// records, written with SET ... EX ttl_s.
//
// Limits: ttl_s per record; max_bytes bounds what this replica writes per TTL window (records
// written within the last ttl_s seconds), so one replica never fills Redis with more than that
// (Redis' own maxmemory policy bounds the server as a whole).
//
// Credentials in the url are sent with AUTH (user and password: Redis 6 ACLs) on every connect;
// the password never appears in a log line or error. Failure: a connection error, an error reply
// (its text is in the warning, e.g. NOAUTH or WRONGPASS) or a command slower than timeout_ms
// turns the tier off with one warning; serving goes on without it (MayContain is false, Put / Get
// return Unavailable) and a reconnect is tried every retry_interval_s on the next use.
//
// Thread-safety: Put / Get / Remove on the TierWorker thread; MayContain, enabled and FillStats
// from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "kv/tier.h"

struct redisContext;

namespace kiln {

struct RedisTierOptions {
  std::string url;  // redis://[[user]:password@]host[:port][/db]
  std::string key_prefix = "kiln:kv:";
  uint64_t namespace_hash = 0;
  int timeout_ms = 200;                  // connect and per-command
  int64_t ttl_s = 3600;                  // > 0
  int64_t max_bytes = int64_t{1} << 30;  // written per TTL window, > 0
  double retry_interval_s = 5.0;
  Status Validate() const;
};

struct RedisUrl {
  std::string host;
  int port = 6379;
  int db = 0;
  std::string user;      // empty: the default user (AUTH password)
  std::string password;  // empty: no AUTH
};

// Parses redis://[[user]:password@]host[:port][/db] (port 6379, db 0 by default). User and
// password may hold %XX escapes; the credentials end at the last '@'. Errors never show the
// password.
Status ParseRedisUrl(const std::string& url, RedisUrl* out);

// The url with its password replaced by "***": the only form of a Redis url that kiln logs or
// puts in an error.
std::string RedactRedisUrl(const std::string& url);

class RedisTier final : public KvTier {
 public:
  // Fails only on invalid options; an unreachable server leaves the tier off (with a warning).
  static StatusOr<std::unique_ptr<RedisTier>> Create(const RedisTierOptions& options);
  ~RedisTier() override;

  const std::string& name() const override { return name_; }
  StatusOr<bool> Put(const BlockHash& key, std::span<const uint8_t> record) override;
  Status Get(const BlockHash& key, std::vector<uint8_t>* record) override;
  void Remove(const BlockHash& key) override;
  bool MayContain(const BlockHash& key) const override;
  void FillStats(TierStats* stats) const override;

  bool enabled() const { return enabled_.load(); }
  std::string KeyOf(const BlockHash& key) const;

 private:
  explicit RedisTier(const RedisTierOptions& options) : options_(options) {}
  // Connects when off and the retry time has come; false while off.
  bool EnsureConnected();
  void TurnOff(const std::string& why);

  const std::string name_ = "redis";
  RedisTierOptions options_;
  RedisUrl url_;
  std::string redacted_url_;     // what logs show
  redisContext* ctx_ = nullptr;  // worker thread only
  std::atomic<bool> enabled_{false};
  std::atomic<int64_t> retry_at_ns_{0};  // steady clock
  bool warned_ = false;
  mutable std::mutex mu_;  // guards the write window
  std::deque<std::pair<std::chrono::steady_clock::time_point, int64_t>> window_;
  int64_t window_bytes_ = 0;
};

}  // namespace kiln
