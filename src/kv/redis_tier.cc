#include "kv/redis_tier.h"

#include <hiredis/hiredis.h>

#include <cstring>
#include <string_view>

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

namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// %XX escapes of a URL's user or password (so that ':', '@' or '/' can be written in them).
bool PercentDecode(std::string_view in, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out->push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) return false;
    const int hi = HexValue(in[i + 1]), lo = HexValue(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return true;
}

// What a failed command gives: the reply's error text (e.g. "NOAUTH Authentication required."),
// else the connection's error.
std::string ReplyError(const redisContext* ctx, const redisReply* r) {
  if (r != nullptr && r->type == REDIS_REPLY_ERROR) return std::string(r->str, r->len);
  if (ctx != nullptr && ctx->err != 0) return ctx->errstr;
  return r == nullptr ? "no reply" : "unexpected reply type " + std::to_string(r->type);
}

}  // namespace

std::string RedactRedisUrl(const std::string& url) {
  const size_t scheme = url.find("://");
  const size_t begin = scheme == std::string::npos ? 0 : scheme + 3;
  const size_t at = url.rfind('@');
  if (at == std::string::npos || at < begin) return url;
  const size_t colon = url.find(':', begin);
  const size_t secret = colon != std::string::npos && colon < at ? colon + 1 : begin;
  return url.substr(0, secret) + "***" + url.substr(at);
}

Status ParseRedisUrl(const std::string& url, RedisUrl* out) {
  const std::string scheme = "redis://";
  if (url.rfind(scheme, 0) != 0) {
    return Status::InvalidArgument("redis url must start with redis://, got \"" +
                                   RedactRedisUrl(url) + "\"");
  }
  *out = RedisUrl();
  std::string rest = url.substr(scheme.size());
  // Credentials: everything before the last '@' is [user]:password.
  const size_t at = rest.rfind('@');
  if (at != std::string::npos) {
    const std::string userinfo = rest.substr(0, at);
    rest.erase(0, at + 1);
    const size_t colon = userinfo.find(':');
    if (colon == std::string::npos) {
      return Status::InvalidArgument(
          "redis url: credentials must be written [user]:password@ in \"" + RedactRedisUrl(url) +
          "\"");
    }
    if (!PercentDecode(std::string_view(userinfo).substr(0, colon), &out->user) ||
        !PercentDecode(std::string_view(userinfo).substr(colon + 1), &out->password)) {
      return Status::InvalidArgument("redis url: bad %-escape in the credentials of \"" +
                                     RedactRedisUrl(url) + "\"");
    }
  }
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
      out->db = static_cast<int>(v);
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
    out->port = static_cast<int>(v);
    rest.resize(colon);
  }
  if (rest.empty()) {
    return Status::InvalidArgument("redis url: no host in \"" + RedactRedisUrl(url) + "\"");
  }
  out->host = rest;
  return Status::Ok();
}

Status RedisTierOptions::Validate() const {
  RedisUrl parsed;
  KILN_RETURN_IF_ERROR(ParseRedisUrl(url, &parsed));
  if (timeout_ms <= 0) return Status::InvalidArgument("redis tier: timeout_ms must be > 0");
  if (ttl_s <= 0) return Status::InvalidArgument("redis tier: ttl_s must be > 0");
  if (max_bytes <= 0) return Status::InvalidArgument("redis tier: max_bytes must be > 0");
  if (!(retry_interval_s >= 0)) return Status::InvalidArgument("redis tier: bad retry interval");
  return Status::Ok();
}

StatusOr<std::unique_ptr<RedisTier>> RedisTier::Create(const RedisTierOptions& options) {
  KILN_RETURN_IF_ERROR(options.Validate());
  std::unique_ptr<RedisTier> tier(new RedisTier(options));
  KILN_RETURN_IF_ERROR(ParseRedisUrl(options.url, &tier->url_));
  tier->redacted_url_ = RedactRedisUrl(options.url);
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
    KILN_LOG(WARNING) << "redis tier " << redacted_url_ << " is off: " << why
                      << "; serving goes on without it (retry in " << options_.retry_interval_s
                      << " s)";
    warned_ = true;
  }
}

bool RedisTier::EnsureConnected() {
  if (ctx_ != nullptr) return true;
  if (NowNs() < retry_at_ns_.load()) return false;
  const timeval tv{options_.timeout_ms / 1000, (options_.timeout_ms % 1000) * 1000};
  ctx_ = redisConnectWithTimeout(url_.host.c_str(), url_.port, tv);
  if (ctx_ == nullptr || ctx_->err != 0) {
    TurnOff(std::string("cannot connect: ") + (ctx_ != nullptr ? ctx_->errstr : "no memory"));
    return false;
  }
  redisSetTimeout(ctx_, tv);
  if (!url_.password.empty()) {
    Reply r(static_cast<redisReply*>(
        url_.user.empty()
            ? redisCommand(ctx_, "AUTH %b", url_.password.data(), url_.password.size())
            : redisCommand(ctx_, "AUTH %b %b", url_.user.data(), url_.user.size(),
                           url_.password.data(), url_.password.size())));
    if (r == nullptr || r->type == REDIS_REPLY_ERROR) {
      TurnOff("AUTH failed: " + ReplyError(ctx_, r.get()));
      return false;
    }
  }
  if (url_.db != 0) {
    Reply r(static_cast<redisReply*>(redisCommand(ctx_, "SELECT %d", url_.db)));
    if (r == nullptr || r->type == REDIS_REPLY_ERROR) {
      TurnOff("SELECT failed: " + ReplyError(ctx_, r.get()));
      return false;
    }
  }
  Reply pong(static_cast<redisReply*>(redisCommand(ctx_, "PING")));
  if (pong == nullptr || pong->type == REDIS_REPLY_ERROR) {
    TurnOff("PING failed: " + ReplyError(ctx_, pong.get()));
    return false;
  }
  if (warned_) KILN_LOG(INFO) << "redis tier " << redacted_url_ << " is on";
  enabled_ = true;
  return true;
}

StatusOr<bool> RedisTier::Put(const BlockHash& key, std::span<const uint8_t> record) {
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
    const std::string why = ReplyError(ctx_, r.get());
    TurnOff("SET failed: " + why);
    return Status::Unavailable("redis tier: SET failed: " + why);
  }
  std::lock_guard<std::mutex> lock(mu_);
  window_.emplace_back(std::chrono::steady_clock::now(), size);
  window_bytes_ += size;
  return true;
}

Status RedisTier::Get(const BlockHash& key, std::vector<uint8_t>* record) {
  if (!EnsureConnected()) return Status::Unavailable("redis tier is off");
  const std::string k = KeyOf(key);
  Reply r(static_cast<redisReply*>(redisCommand(ctx_, "GET %b", k.data(), k.size())));
  if (r == nullptr || r->type == REDIS_REPLY_ERROR) {
    const std::string why = ReplyError(ctx_, r.get());
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
  if (r == nullptr || r->type == REDIS_REPLY_ERROR) {
    TurnOff("DEL failed: " + ReplyError(ctx_, r.get()));
  }
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
