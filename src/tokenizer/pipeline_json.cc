#include "tokenizer/pipeline_json.h"

namespace kiln::tokenizer {

Status ForEachComponent(
    const nlohmann::json& j, std::string_view what, const char* list_key,
    const std::function<Status(const nlohmann::json&, const std::string&)>& add) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    return Status::InvalidArgument(std::string(what) + ": an object with a string 'type' expected");
  }
  const std::string type = j["type"].get<std::string>();
  if (type != "Sequence") return add(j, type);
  auto list = j.find(list_key);
  if (list == j.end() || !list->is_array()) {
    return Status::InvalidArgument(std::string(what) + " Sequence: '" + list_key +
                                   "' array expected");
  }
  for (const nlohmann::json& item : *list) {
    KILN_RETURN_IF_ERROR(ForEachComponent(item, what, list_key, add));
  }
  return Status::Ok();
}

}  // namespace kiln::tokenizer
