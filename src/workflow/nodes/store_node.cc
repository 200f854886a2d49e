// store: key-value state between runs (conversation memory, counters, caches).
//   op: get | set | delete     key: template     value: template or structure (set; stored as JSON)
//   backend: sqlite (default; Services' kv file) | redis://host:port     ttl_s: expiry (set)
// Output: get → {found, value} (value parsed back from JSON); set → {key, stored: true};
// delete → {key, deleted: true}.
#include "workflow/kv_store.h"
#include "workflow/node.h"
#include "workflow/nodes/node_factories.h"
#include "workflow/services.h"

namespace kiln::workflow {
namespace {

class StoreNode final : public Node {
 public:
  std::string op_;
  Template key_;
  TemplateTree value_;
  std::string backend_ = "sqlite";
  double ttl_s_ = 0;

  StatusOr<Json> Run(NodeContext& ctx) const override {
    KILN_ASSIGN_OR_RETURN(KvStore * kv, ctx.services->Kv(backend_));
    KILN_ASSIGN_OR_RETURN(std::string key, key_.Render(*ctx.vars));
    ctx.input = {{"op", op_}, {"key", key}};
    if (op_ == "get") {
      KILN_ASSIGN_OR_RETURN(std::optional<std::string> v, kv->Get(key));
      if (!v) return Json{{"found", false}, {"value", nullptr}};
      Json parsed = Json::parse(*v, nullptr, false);
      return Json{{"found", true}, {"value", parsed.is_discarded() ? Json(*v) : parsed}};
    }
    if (op_ == "set") {
      KILN_ASSIGN_OR_RETURN(Json value, value_.Render(*ctx.vars));
      KILN_RETURN_IF_ERROR(kv->Set(key, value.dump(), ttl_s_));
      return Json{{"key", key}, {"stored", true}};
    }
    KILN_RETURN_IF_ERROR(kv->Delete(key));
    return Json{{"key", key}, {"deleted", true}};
  }
};

}  // namespace

StatusOr<std::unique_ptr<Node>> CreateStoreNode(const NodeSpec&, NodeFields& f) {
  auto node = std::make_unique<StoreNode>();
  KILN_ASSIGN_OR_RETURN(node->op_, f.Enum("op", {"get", "set", "delete"}, "get"));
  KILN_ASSIGN_OR_RETURN(node->key_, f.TemplateField("key", true));
  if (node->op_ == "set") {
    if (f.Raw("value") == nullptr) return f.Error("value", "is required for op: set");
    KILN_ASSIGN_OR_RETURN(node->value_, f.TreeField("value", Json()));
  } else if (f.Raw("value") != nullptr) {
    return f.Error("value", "only op: set takes a value");
  }
  KILN_ASSIGN_OR_RETURN(node->backend_, f.String("backend", false, "sqlite"));
  if (node->backend_ != "sqlite" && node->backend_.rfind("redis://", 0) != 0) {
    return f.Error("backend", "must be sqlite or a redis://host:port URL");
  }
  KILN_ASSIGN_OR_RETURN(node->ttl_s_, f.Number("ttl_s", 0, 1e9, 0));
  return std::unique_ptr<Node>(std::move(node));
}

}  // namespace kiln::workflow
