// KvStore: the key-value store behind `store` nodes — SQLite (a table in one file, WAL, the
// default) or Redis (hiredis, for state shared between servers). Values are strings (nodes store
// JSON text); an optional TTL expires a key.
//
// Thread-safety: every method may be called from many threads at once (each implementation
// serialises access to its one connection).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "kiln/status.h"

namespace kiln::workflow {

class KvStore {
 public:
  virtual ~KvStore() = default;
  virtual StatusOr<std::optional<std::string>> Get(const std::string& key) = 0;
  // ttl_s <= 0: no expiry.
  virtual Status Set(const std::string& key, const std::string& value, double ttl_s) = 0;
  virtual Status Delete(const std::string& key) = 0;
};

// `path` may be ":memory:".
StatusOr<std::unique_ptr<KvStore>> OpenSqliteKv(const std::string& path);
// `url`: redis://host[:port][/db]; fails when the server does not answer PING within 2 s.
StatusOr<std::unique_ptr<KvStore>> OpenRedisKv(const std::string& url);

}  // namespace kiln::workflow
