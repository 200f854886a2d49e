#include "bench/sse.h"

#include <nlohmann/json.hpp>

namespace kiln::bench {

void SseParser::Feed(std::string_view bytes) {
  for (char c : bytes) {
    if (c == '\n' && last_was_cr_) {  // the '\n' of a "\r\n"
      last_was_cr_ = false;
      continue;
    }
    last_was_cr_ = c == '\r';
    if (c == '\n' || c == '\r') {
      Line(line_);
      line_.clear();
    } else {
      line_ += c;
    }
  }
}

void SseParser::Finish() {
  if (!line_.empty()) Line(line_);
  line_.clear();
  Line("");
}

void SseParser::Line(std::string_view line) {
  if (line.empty()) {
    if (has_data_) on_event_(data_);
    data_.clear();
    has_data_ = false;
    return;
  }
  if (line.front() == ':') return;  // comment
  const size_t colon = line.find(':');
  const std::string_view field = line.substr(0, colon);
  if (field != "data") return;
  std::string_view value = colon == std::string_view::npos ? "" : line.substr(colon + 1);
  if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (has_data_) data_ += '\n';
  data_.append(value.data(), value.size());
  has_data_ = true;
}

StreamChunk ParseStreamChunk(const std::string& data) {
  using json = nlohmann::json;
  StreamChunk c;
  if (data == "[DONE]") {
    c.done = true;
    return c;
  }
  const json j = json::parse(data, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    c.parse_error = true;
    return c;
  }
  if (j.contains("error")) {
    const json& e = j["error"];
    c.error = e.is_object() && e.contains("message") && e["message"].is_string()
                  ? e["message"].get<std::string>()
                  : e.dump();
    return c;
  }
  if (j.contains("choices") && j["choices"].is_array() && !j["choices"].empty() &&
      j["choices"][0].is_object()) {
    const json& ch = j["choices"][0];
    auto take = [&c](const json& obj, const char* key) {
      if (obj.is_object() && obj.contains(key) && obj[key].is_string()) {
        c.content += obj[key].get<std::string>();
      }
    };
    take(ch, "text");
    if (ch.contains("delta")) {
      take(ch["delta"], "reasoning_content");
      take(ch["delta"], "content");
    }
    if (ch.contains("message")) take(ch["message"], "content");
    if (ch.contains("finish_reason") && ch["finish_reason"].is_string()) {
      c.finish_reason = ch["finish_reason"].get<std::string>();
    }
  }
  if (j.contains("usage") && j["usage"].is_object()) {
    const json& u = j["usage"];
    auto num = [&u](const char* key) -> int64_t {
      return u.contains(key) && u[key].is_number_integer() ? u[key].get<int64_t>() : -1;
    };
    c.prompt_tokens = num("prompt_tokens");
    c.completion_tokens = num("completion_tokens");
    if (u.contains("prompt_tokens_details") && u["prompt_tokens_details"].is_object()) {
      const json& d = u["prompt_tokens_details"];
      if (d.contains("cached_tokens") && d["cached_tokens"].is_number_integer()) {
        c.cached_tokens = d["cached_tokens"].get<int64_t>();
      }
    }
  }
  return c;
}

}  // namespace kiln::bench
