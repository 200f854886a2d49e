#include "workflow/services.h"

#include "workflow/http_client.h"
#include "workflow/kv_store.h"

namespace kiln::workflow {

Status ServicesOptions::Validate() const {
  if (!llm_base_url.empty()) {
    auto url = ParseHttpUrl(llm_base_url);
    if (!url.ok()) return url.status().WithContext("llm base URL");
  }
  return Status::Ok();
}

Services::Services(ServicesOptions options) : options_(std::move(options)) {}
Services::~Services() = default;

StatusOr<KvStore*> Services::Kv(const std::string& backend) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = stores_.find(backend);
  if (it != stores_.end()) return it->second.get();
  std::unique_ptr<KvStore> store;
  if (backend == "sqlite") {
    KILN_ASSIGN_OR_RETURN(store, OpenSqliteKv(options_.kv_path));
  } else if (backend.rfind("redis://", 0) == 0) {
    KILN_ASSIGN_OR_RETURN(store, OpenRedisKv(backend));
  } else {
    return Status::InvalidArgument("unknown store backend '" + backend +
                                   "' (sqlite, or a redis://host:port URL)");
  }
  KvStore* raw = store.get();
  stores_.emplace(backend, std::move(store));
  return raw;
}

}  // namespace kiln::workflow
