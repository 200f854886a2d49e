#include "kv/redis_tier.h"

#include <hiredis/hiredis.h>

#include <cstring>

#include "common/logging.h"

namespace kiln {
namespace {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct ReplyDeleter {
  void operator()(redisReply* r) const {
    if (r != nullptr) freeReplyObject(r);
  }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

}  // namespace

Status ParseRedisUrl(const std::string& url, std::string* host, int* port, int* db) {
  const std::string scheme = "redis://";
  if (url.rfind(scheme, 0) != 0) {
    return Status::InvalidArgument("redis url must start with redis://, got \"" + url + "\"");
  }
  std::string rest = url.substr(scheme.size());
  *db = 0;
  *port = 6379;
  const size_t slash = rest.find('/');
  if (slash != std::string::npos) {
    const std::string d = rest.substr(slash + 1);
    rest.resize(slash);
    if (!d.empty()) {
      char* end = nullptr;
      const long v = std::strtol(d.c_str(), &end, 10);
      if (*end != '\0' || v < 0 || v > 1000000) {
        return Status::InvalidArgument("redis url: bad database \"" + d + "\"");
      }
      *db = static_cast<int>(v);
    }
  }
  const size_t colon = rest.rfind(':');
  if (colon != std::string::npos) {
    const std::string p = rest.substr(colon + 1);
    char* end = nullptr;
    const long v = std::strtol(p.c_str(), &end, 10);
    if (p.empty() || *end != '\0' || v <= 0 || v > 65535) {
      return Status::InvalidArgument("redis url: bad port \"" + p + "\"");
    }
    *port = static_cast<int>(v);
    rest.resize(colon);
  }
  if (rest.empty()) return Status::InvalidArgument("redis url: no host in \"" + url + "\"");
  *host = rest;
  return Status::Ok();
}

Status RedisTierOptions::Validate() const {
  std::string host;
  int port = 0, db = 0;
  KILN_RETURN_IF_ERROR(ParseRedisUrl(url, &host, &port, &db));
  if (timeout_ms <= 0) return Status::InvalidArgument("redis tier: timeout_ms must be > 0");
  if (ttl_s <= 0) return Status::InvalidArgument("redis tier: ttl_s must be > 0");
  if (max_bytes <= 0) return Status::InvalidArgument("redis tier: max_bytes must be > 0");
  if (!(retry_interval_s >= 0)) return Status::InvalidArgument("redis tier: bad retry interval");
  return Status::Ok();
}

StatusOr<std::unique_ptr<RedisTier>> RedisTier::Create(const RedisTierOptions& options) {
  KILN_RETURN_IF_ERROR(options.Validate());
  std::unique_ptr<RedisTier> tier(new RedisTier(options));
  KILN_RETURN_IF_ERROR(ParseRedisUrl(options.url, &tier->host_, &tier->port_, &tier->db_));
  tier->EnsureConnected();  // off with a warning when unreachable
  return tier;
}

RedisTier::~RedisTier() {
  if (ctx_ != nullptr) redisFree(ctx_);
}

std::string RedisTier::KeyOf(const BlockHash& key) const {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string ns(16, '0');
  for (int i = 0; i < 16; ++i)
    ns[static_cast<size_t>(15 - i)] = kDigits[(options_.namespace_hash >> (4 * i)) & 15];
  return options_.key_prefix + ns + ":" + key.Hex();
}

void RedisTier::TurnOff(const std::string& why) {
  if (ctx_ != nullptr) {
    redisFree(ctx_);
    ctx_ = nullptr;
  }
  const bool was_on = enabled_.exchange(false);
  retry_at_ns_ = NowNs() + static_cast<int64_t>(options_.retry_interval_s * 1e9);
  if (was_on || !warned_) {
    KILN_LOG(WARNING) << "redis tier " << options_.url << " is off: " << why
                      << "; serving goes on without it (retry in " << options_.retry_interval_s
                      << " s)";
    warned_ = true;
  }
}

bool RedisTier::EnsureConnected() {
  if (ctx_ != nullptr) return true;
  if (NowNs() < retry_at_ns_.load()) return false;
  const timeval tv{options_.timeout_ms / 1000, (options_.timeout_ms % 1000) * 1000};
  ctx_ = redisConnectWithTimeout(host_.c_str(), port_, tv);
  if (ctx_ == nullptr || ctx_->err != 0) {
    TurnOff(std::string("cannot connect: ") + (ctx_ != nullptr ? ctx_->errstr : "no memory"));
    return false;
  }
  redisSetTimeout(ctx_, tv);
  if (db_ != 0) {
    Reply r(static_cast<redisReply*>(redisCommand(ctx_, "SELECT %d", db_)));
    if (r == nullptr || r->type == REDIS_REPLY_ERROR) {
      TurnOff("SELECT failed");
      return false;
    }
  }
  Reply pong(static_cast<redisReply*>(redisCommand(ctx_, "PING")));
  if (pong == nullptr || pong->type == REDIS_REPLY_ERROR) {
    TurnOff(std::string("PING failed: ") + (ctx_->err != 0 ? ctx_->errstr : "error reply"));
    return false;
  }
  if (warned_) KILN_LOG(INFO) << "redis tier " << options_.url << " is on";
  enabled_ = true;
  return true;
}

Status RedisTier::Put(const BlockHash& key, std::span<const uint8_t> record) {
  const int64_t size = static_cast<int64_t>(record.size());
  {
    std::lock_guard<std::mutex> lock(mu_);
    const auto now = std::chrono::steady_clock::now();
    while (!window_.empty() && now - window_.front().first > std::chrono::seconds(options_.ttl_s)) {
      window_bytes_ -= window_.front().second;
      window_.pop_front();
    }
    if (window_bytes_ + size > options_.max_bytes) {
      return Status::ResourceExhausted("redis tier: write budget of the TTL window used");
    }
  }
  if (!EnsureConnected()) return Status::Unavailable("redis tier is off");
  const std::string k = KeyOf(key);
  Reply r(static_cast<redisReply*>(redisCommand(ctx_, "SET %b %b EX %lld", k.data(), k.size(),
                                                record.data(), record.size(),
                                                static_cast<long long>(options_.ttl_s))));
  if (r == nullptr || r->type == REDIS_REPLY_ERROR) {
    const std::string why = r == nullptr ? std::string(ctx_->errstr) : std::string(r->str, r->len);
    TurnOff("SET failed: " + why);
    return Status::Unavailable("redis tier: SET failed: " + why);
  }
  std::lock_guard<std::mutex> lock(mu_);
  window_.emplace_back(std::chrono::steady_clock::now(), size);
  window_bytes_ += size;
  return Status::Ok();
}

Status RedisTier::Get(const BlockHash& key, std::vector<uint8_t>* record) {
  if (!EnsureConnected()) return Status::Unavailable("redis tier is off");
  const std::string k = KeyOf(key);
  Reply r(static_cast<redisReply*>(redisCommand(ctx_, "GET %b", k.data(), k.size())));
  if (r == nullptr || r->type == REDIS_REPLY_ERROR) {
    const std::string why = r == nullptr ? std::string(ctx_->errstr) : std::string(r->str, r->len);
    TurnOff("GET failed: " + why);
    return Status::Unavailable("redis tier: GET failed: " + why);
  }
  if (r->type == REDIS_REPLY_NIL) return Status::NotFound("redis tier: no record");
  if (r->type != REDIS_REPLY_STRING) return Status::DataLoss("redis tier: unexpected reply type");
  record->assign(reinterpret_cast<const uint8_t*>(r->str),
                 reinterpret_cast<const uint8_t*>(r->str) + r->len);
  return Status::Ok();
}

void RedisTier::Remove(const BlockHash& key) {
  if (!EnsureConnected()) return;
  const std::string k = KeyOf(key);
  Reply r(static_cast<redisReply*>(redisCommand(ctx_, "DEL %b", k.data(), k.size())));
  if (r == nullptr) TurnOff(std::string("DEL failed: ") + ctx_->errstr);
}

bool RedisTier::MayContain(const BlockHash&) const {
  return enabled_.load() || NowNs() >= retry_at_ns_.load();
}

void RedisTier::FillStats(TierStats* stats) const {
  stats->enabled = enabled_.load();
  stats->capacity_bytes = options_.max_bytes;
  std::lock_guard<std::mutex> lock(mu_);
  stats->used_bytes = window_bytes_;
}

}  // namespace kiln
