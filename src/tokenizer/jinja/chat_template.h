// ChatTemplate: a parsed Jinja chat template (the `chat_template` of tokenizer_config.json) and its
// rendering the way HF transformers' apply_chat_template does it: trim_blocks + lstrip_blocks,
// `messages`, `tools`, `documents`, `add_generation_prompt`, `bos_token`, `eos_token` and the
// caller's extra keyword arguments (e.g. enable_thinking) as variables, plus raise_exception() and
// strftime_now(); tojson keeps non-ASCII text (ensure_ascii=False).
//
// continue_final_message (assistant prefill) follows transformers/vLLM: render with the final
// assistant message included, then cut the text right after that message's content (its last
// occurrence, compared with trailing whitespace stripped as HF does).
//
// Not responsible for: tokenization, choosing the template (tokenizer code does), converting
// OpenAI tool-call arguments from JSON strings to objects (the server does that before rendering).
//
// Errors: a malformed template fails Parse with "line L, column C: problem"; a render that fails
// (raise_exception, type errors, undefined attribute access, output over
// ChatTemplateOptions::max_rendered_bytes (default 256 MiB) or building 16× that in strings and
// containers, runaway loops, recursion) returns a Status naming the position and problem. Nothing
// here throws or aborts on bad input.
//
// Thread-safety: a ChatTemplate is immutable after Parse; Render may run on many threads at once.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "kiln/status.h"
#include "kiln/tokenizer.h"

namespace kiln {
namespace jinja {
struct Stmt;
}

class ChatTemplate final {
 public:
  static StatusOr<ChatTemplate> Parse(std::string source);

  // `messages`: an array of objects ({role, content, ...}); content may be a string, null or an
  // array of parts, whatever the template handles. ordered_json keeps object keys in document
  // order, as Python dicts do (it shows in `tojson` of tool schemas); a nlohmann::json argument
  // converts implicitly (its keys are already sorted).
  StatusOr<std::string> Render(const nlohmann::ordered_json& messages,
                               const ChatTemplateOptions& options, const std::string& bos_token,
                               const std::string& eos_token) const;

  // The same for callers that parsed their JSON as nlohmann::ordered_json, so that objects keep
  // their key order as Python dicts do (it shows in `tojson` of tool schemas). `tools` and
  // `documents` here replace options.tools / options.documents.
  StatusOr<std::string> Render(const nlohmann::ordered_json& messages,
                               const nlohmann::ordered_json& tools,
                               const nlohmann::ordered_json& documents,
                               const ChatTemplateOptions& options, const std::string& bos_token,
                               const std::string& eos_token) const;

  const std::string& source() const;

 private:
  template <typename Json>
  StatusOr<std::string> RenderImpl(const Json& messages, const Json& tools, const Json& documents,
                                   const ChatTemplateOptions& options, const std::string& bos_token,
                                   const std::string& eos_token) const;
  struct Parsed;
  explicit ChatTemplate(std::shared_ptr<const Parsed> parsed) : parsed_(std::move(parsed)) {}
  std::shared_ptr<const Parsed> parsed_;  // shared: copies of a ChatTemplate are cheap
};

}  // namespace kiln
