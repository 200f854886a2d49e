#include "workflow/kv_store.h"

#include <hiredis/hiredis.h>
#include <sqlite3.h>

#include <chrono>
#include <mutex>

namespace kiln::workflow {
namespace {

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

class SqliteKv final : public KvStore {
 public:
  explicit SqliteKv(sqlite3* db) : db_(db) {}
  ~SqliteKv() override { sqlite3_close(db_); }

  StatusOr<std::optional<std::string>> Get(const std::string& key) override {
    std::lock_guard<std::mutex> lock(mu_);
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db_, "SELECT value, expires_at FROM kv WHERE key = ?", -1, &st, nullptr);
    sqlite3_bind_text(st, 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
    std::optional<std::string> out;
    const int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      const double expires = sqlite3_column_double(st, 1);
      if (expires <= 0 || expires > NowSeconds()) {
        out = std::string(reinterpret_cast<const char*>(sqlite3_column_blob(st, 0)),
                          static_cast<size_t>(sqlite3_column_bytes(st, 0)));
      }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
      return Status::IOError(std::string("kv get: ") + sqlite3_errmsg(db_));
    return out;
  }

  Status Set(const std::string& key, const std::string& value, double ttl_s) override {
    std::lock_guard<std::mutex> lock(mu_);
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db_, "INSERT OR REPLACE INTO kv (key, value, expires_at) VALUES (?, ?, ?)",
                       -1, &st, nullptr);
    sqlite3_bind_text(st, 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 2, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
    sqlite3_bind_double(st, 3, ttl_s > 0 ? NowSeconds() + ttl_s : 0);
    const int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return Status::IOError(std::string("kv set: ") + sqlite3_errmsg(db_));
    return Status::Ok();
  }

  Status Delete(const std::string& key) override {
    std::lock_guard<std::mutex> lock(mu_);
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db_, "DELETE FROM kv WHERE key = ?", -1, &st, nullptr);
    sqlite3_bind_text(st, 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
    const int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return Status::IOError(std::string("kv delete: ") + sqlite3_errmsg(db_));
    return Status::Ok();
  }

 private:
  std::mutex mu_;
  sqlite3* db_;
};

class RedisKv final : public KvStore {
 public:
  explicit RedisKv(redisContext* c) : c_(c) {}
  ~RedisKv() override { redisFree(c_); }

  StatusOr<std::optional<std::string>> Get(const std::string& key) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto* r = static_cast<redisReply*>(redisCommand(c_, "GET %b", key.data(), key.size()));
    if (r == nullptr) return Status::Unavailable(std::string("redis GET: ") + c_->errstr);
    std::optional<std::string> out;
    if (r->type == REDIS_REPLY_STRING) out = std::string(r->str, r->len);
    const bool error = r->type == REDIS_REPLY_ERROR;
    const std::string message = error ? std::string(r->str, r->len) : "";
    freeReplyObject(r);
    if (error) return Status::Unavailable("redis GET: " + message);
    return out;
  }

  Status Set(const std::string& key, const std::string& value, double ttl_s) override {
    std::lock_guard<std::mutex> lock(mu_);
    redisReply* r;
    if (ttl_s > 0) {
      const long long ms = static_cast<long long>(ttl_s * 1000);
      r = static_cast<redisReply*>(redisCommand(c_, "SET %b %b PX %lld", key.data(), key.size(),
                                                value.data(), value.size(), ms));
    } else {
      r = static_cast<redisReply*>(
          redisCommand(c_, "SET %b %b", key.data(), key.size(), value.data(), value.size()));
    }
    return Finish(r, "SET");
  }

  Status Delete(const std::string& key) override {
    std::lock_guard<std::mutex> lock(mu_);
    return Finish(static_cast<redisReply*>(redisCommand(c_, "DEL %b", key.data(), key.size())),
                  "DEL");
  }

 private:
  Status Finish(redisReply* r, const char* what) {
    if (r == nullptr) return Status::Unavailable(std::string("redis ") + what + ": " + c_->errstr);
    const bool error = r->type == REDIS_REPLY_ERROR;
    const std::string message = error ? std::string(r->str, r->len) : "";
    freeReplyObject(r);
    if (error) return Status::Unavailable(std::string("redis ") + what + ": " + message);
    return Status::Ok();
  }
  std::mutex mu_;
  redisContext* c_;
};

}  // namespace

StatusOr<std::unique_ptr<KvStore>> OpenSqliteKv(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) {
    const std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return Status::IOError("cannot open key-value store '" + path + "': " + msg);
  }
  sqlite3_busy_timeout(db, 5000);
  char* err = nullptr;
  const char* sql =
      "PRAGMA journal_mode=WAL;"
      "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL, "
      "expires_at REAL NOT NULL DEFAULT 0);";
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    const std::string msg = err ? err : "?";
    sqlite3_free(err);
    sqlite3_close(db);
    return Status::IOError("key-value store '" + path + "': " + msg);
  }
  return std::unique_ptr<KvStore>(new SqliteKv(db));
}

StatusOr<std::unique_ptr<KvStore>> OpenRedisKv(const std::string& url) {
  const std::string scheme = "redis://";
  if (url.rfind(scheme, 0) != 0)
    return Status::InvalidArgument("redis URL must start with redis://");
  std::string rest = url.substr(scheme.size());
  int db_index = 0;
  if (const size_t slash = rest.find('/'); slash != std::string::npos) {
    db_index = std::atoi(rest.substr(slash + 1).c_str());
    rest.resize(slash);
  }
  std::string host = rest;
  int port = 6379;
  if (const size_t colon = rest.rfind(':'); colon != std::string::npos) {
    host = rest.substr(0, colon);
    port = std::atoi(rest.substr(colon + 1).c_str());
  }
  timeval tv{2, 0};
  redisContext* c = redisConnectWithTimeout(host.c_str(), port, tv);
  if (c == nullptr || c->err) {
    const std::string msg = c ? c->errstr : "out of memory";
    if (c) redisFree(c);
    return Status::Unavailable("cannot connect to redis at " + host + ":" + std::to_string(port) +
                               ": " + msg);
  }
  redisSetTimeout(c, tv);
  if (db_index != 0) {
    auto* r = static_cast<redisReply*>(redisCommand(c, "SELECT %d", db_index));
    if (r) freeReplyObject(r);
  }
  return std::unique_ptr<KvStore>(new RedisKv(c));
}

}  // namespace kiln::workflow
