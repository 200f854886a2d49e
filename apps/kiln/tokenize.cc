// `kiln tokenize --model PATH | --tokenizer PATH`: JSON lines in, JSON lines out, one per input
// line (an empty input line is skipped):
//   {"text": "..."}                      → {"ids": [...]}   (no special tokens added unless
//                                                            "add_special_tokens": true)
//   {"ids": [...]}                       → {"text": "..."}  ("skip_special_tokens": false default)
//   {"messages": [...], "add_generation_prompt": bool, "continue_final_message": bool,
//    "tools": [...], "chat_template_kwargs": {...}}  → {"prompt": "..."}
//   anything else                        → {"error": "..."} and on to the next line.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "flags.h"
#include "kiln/tokenizer.h"
#include "subcommands.h"

namespace kiln::cli {
namespace {

using json = nlohmann::ordered_json;  // keeps key order of tool schemas for the chat template

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json ErrorLine(const std::string& message) { return json{{"error", message}}; }

// A boolean field of a line: absent or null → `fallback`; another type → nullopt.
std::optional<bool> BoolField(const json& in, const char* key, bool fallback) {
  if (!in.contains(key) || in[key].is_null()) return fallback;
  if (!in[key].is_boolean()) return std::nullopt;
  return in[key].get<bool>();
}

json HandleLine(const Tokenizer& tok, const std::string& line) {
  json in = json::parse(line, nullptr, false);
  if (in.is_discarded()) return ErrorLine("malformed JSON");
  if (!in.is_object()) return ErrorLine("each line must be a JSON object");
  if (in.contains("text")) {
    if (!in["text"].is_string()) return ErrorLine("\"text\" must be a string");
    const std::optional<bool> add_special = BoolField(in, "add_special_tokens", false);
    if (!add_special) return ErrorLine("\"add_special_tokens\" must be a bool");
    return json{{"ids", tok.Encode(in["text"].get<std::string>(), *add_special)}};
  }
  if (in.contains("ids")) {
    const json& ids_j = in["ids"];
    if (!ids_j.is_array()) return ErrorLine("\"ids\" must be an array of token ids");
    std::vector<int32_t> ids;
    for (const json& v : ids_j) {
      if (!v.is_number_integer()) return ErrorLine("\"ids\" must hold integers");
      int64_t id = v.get<int64_t>();
      if (id < 0 || id >= tok.vocab_size()) {
        return ErrorLine("token id " + std::to_string(id) + " is outside the vocabulary (size " +
                         std::to_string(tok.vocab_size()) + ")");
      }
      ids.push_back(static_cast<int32_t>(id));
    }
    const std::optional<bool> skip = BoolField(in, "skip_special_tokens", false);
    if (!skip) return ErrorLine("\"skip_special_tokens\" must be a bool");
    auto text = tok.Decode(ids, *skip);
    if (!text.ok()) return ErrorLine(text.status().message());
    return json{{"text", *text}};
  }
  if (in.contains("messages")) {
    if (!in["messages"].is_array()) return ErrorLine("\"messages\" must be an array");
    ChatTemplateOptions o;
    const json& agp = in.contains("add_generation_prompt") ? in["add_generation_prompt"] : json();
    const json& cfm = in.contains("continue_final_message") ? in["continue_final_message"] : json();
    if (!agp.is_null() && !agp.is_boolean())
      return ErrorLine("add_generation_prompt must be a bool");
    if (!cfm.is_null() && !cfm.is_boolean())
      return ErrorLine("continue_final_message must be a bool");
    o.add_generation_prompt = agp.is_boolean() ? agp.get<bool>() : false;
    o.continue_final_message = cfm.is_boolean() ? cfm.get<bool>() : false;
    if (in.contains("tools")) o.tools = in["tools"];
    if (in.contains("documents")) o.documents = in["documents"];
    if (in.contains("chat_template_kwargs")) {
      if (!in["chat_template_kwargs"].is_object()) {
        return ErrorLine("chat_template_kwargs must be an object");
      }
      o.extra_kwargs = in["chat_template_kwargs"];
    }
    if (in.contains("chat_template")) {
      if (!in["chat_template"].is_string()) return ErrorLine("chat_template must be a string");
      o.chat_template = in["chat_template"].get<std::string>();
    }
    auto prompt = tok.ApplyChatTemplate(in["messages"], o);
    if (!prompt.ok()) return ErrorLine(prompt.status().message());
    return json{{"prompt", *prompt}};
  }
  return ErrorLine("expected one of \"text\", \"ids\" or \"messages\"");
}

Status Tokenize(int argc, char** argv) {
  Flags f;
  f.Value("model", "model directory or .gguf whose tokenizer to use");
  f.Value("tokenizer", "tokenizer directory, tokenizer.json or .gguf");
  KILN_RETURN_IF_ERROR(f.Parse(argc, argv, 2));
  std::string path = f.GetString("tokenizer", f.GetString("model"));
  if (path.empty()) return Status::InvalidArgument("--model or --tokenizer is required");
  KILN_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tok, LoadTokenizer(path));
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::string out = Dump(HandleLine(*tok, line));
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
  }
  return Status::Ok();
}

}  // namespace

int RunTokenize(int argc, char** argv) {
  Status s = Tokenize(argc, argv);
  if (!s.ok()) {
    std::fprintf(stderr, "kiln tokenize: error: %s\n", s.message().c_str());
    return s.code() == StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}

}  // namespace kiln::cli
