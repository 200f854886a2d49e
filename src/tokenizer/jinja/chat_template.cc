#include "tokenizer/jinja/chat_template.h"

#include <exception>
#include <utility>

#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/interpreter.h"
#include "tokenizer/jinja/lexer.h"
#include "tokenizer/jinja/parser.h"
#include "tokenizer/jinja/text.h"

namespace kiln {
namespace {
// ChatTemplateOptions::max_rendered_bytes → RenderLimits::max_allocated_bytes.
constexpr size_t kAllocatedPerRenderedByte = 16;
}  // namespace

namespace jinja {
std::string TemplateError::Describe() const {
  if (loc_.line <= 0) return what();
  return "line " + std::to_string(loc_.line) + ", column " + std::to_string(loc_.col) + ": " +
         what();
}
}  // namespace jinja

struct ChatTemplate::Parsed {
  std::string source;
  jinja::Body body;
};

const std::string& ChatTemplate::source() const { return parsed_->source; }

StatusOr<ChatTemplate> ChatTemplate::Parse(std::string source) {
  try {
    auto parsed = std::make_shared<Parsed>();
    parsed->body = jinja::ParseTemplate(jinja::Tokenize(source));
    parsed->source = std::move(source);
    return ChatTemplate(std::move(parsed));
  } catch (const jinja::TemplateError& e) {
    return Status::InvalidArgument("chat template syntax error at " + e.Describe());
  } catch (const std::exception& e) {
    return Status::Internal(std::string("chat template parse failed: ") + e.what());
  }
}

namespace {

// The text HF's continue_final_message looks for: the final message's content, or the text of its
// last text part when the content is a list of parts.
template <typename Json>
StatusOr<std::string> FinalMessageText(const Json& message) {
  const auto it = message.find("content");
  if (it != message.end() && it->is_string()) return it->template get<std::string>();
  if (it != message.end() && it->is_array()) {
    for (auto part = it->rbegin(); part != it->rend(); ++part) {
      if (part->is_object() && part->contains("text") && (*part)["text"].is_string()) {
        return (*part)["text"].template get<std::string>();
      }
    }
  }
  return Status::InvalidArgument(
      "continue_final_message is set but the final message has no text content to continue");
}

}  // namespace

StatusOr<std::string> ChatTemplate::Render(const nlohmann::ordered_json& messages,
                                           const ChatTemplateOptions& options,
                                           const std::string& bos_token,
                                           const std::string& eos_token) const {
  return RenderImpl(messages, options.tools, options.documents, options, bos_token, eos_token);
}

StatusOr<std::string> ChatTemplate::Render(const nlohmann::ordered_json& messages,
                                           const nlohmann::ordered_json& tools,
                                           const nlohmann::ordered_json& documents,
                                           const ChatTemplateOptions& options,
                                           const std::string& bos_token,
                                           const std::string& eos_token) const {
  return RenderImpl(messages, tools, documents, options, bos_token, eos_token);
}

template <typename Json>
StatusOr<std::string> ChatTemplate::RenderImpl(const Json& messages, const Json& tools,
                                               const Json& documents,
                                               const ChatTemplateOptions& options,
                                               const std::string& bos_token,
                                               const std::string& eos_token) const {
  if (!messages.is_array()) return Status::InvalidArgument("messages must be a JSON array");
  if (options.add_generation_prompt && options.continue_final_message) {
    return Status::InvalidArgument(
        "continue_final_message and add_generation_prompt are not compatible: use "
        "continue_final_message to continue the final (assistant) message, add_generation_prompt "
        "to start a new one");
  }
  std::string final_text;
  if (options.continue_final_message) {
    if (messages.empty() || !messages.back().is_object() ||
        messages.back().value("role", Json()) != "assistant") {
      return Status::InvalidArgument(
          "continue_final_message requires the last message to be from the assistant");
    }
    KILN_ASSIGN_OR_RETURN(final_text, FinalMessageText(messages.back()));
  }
  if (!options.extra_kwargs.is_null() && !options.extra_kwargs.is_object()) {
    return Status::InvalidArgument("chat template kwargs must be a JSON object");
  }

  std::string rendered;
  try {
    jinja::ContainerArena arena;  // frees whatever the render built, cycles included
    jinja::ValueDict globals;
    jinja::AddGlobalFunctions(&globals);
    globals.Set("messages", jinja::FromJson(messages));
    globals.Set("tools", jinja::FromJson(tools));
    globals.Set("documents", jinja::FromJson(documents));
    globals.Set("add_generation_prompt", jinja::Value::Bool(options.add_generation_prompt));
    globals.Set("bos_token", jinja::Value::Str(bos_token));
    globals.Set("eos_token", jinja::Value::Str(eos_token));
    if (options.extra_kwargs.is_object()) {
      for (auto it = options.extra_kwargs.begin(); it != options.extra_kwargs.end(); ++it) {
        if (it.key() == "messages") continue;  // the conversation is not overridable
        globals.Set(it.key(), jinja::FromJson(it.value()));
      }
    }
    jinja::RenderLimits limits;
    if (options.max_rendered_bytes > 0) {
      limits.max_output_bytes = options.max_rendered_bytes;
      limits.max_allocated_bytes = options.max_rendered_bytes * kAllocatedPerRenderedByte;
    }
    jinja::Interpreter interpreter{limits};
    rendered = interpreter.Render(parsed_->body, globals);
  } catch (const jinja::TemplateError& e) {
    if (e.kind() == jinja::TemplateErrorKind::kRaised) {
      return Status::InvalidArgument("chat template raised an error: " + std::string(e.what()) +
                                     " (at " + e.Describe().substr(0, e.Describe().find(':')) +
                                     ")");
    }
    return Status::InvalidArgument("chat template render failed at " + e.Describe());
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("chat template render ran out of memory");
  } catch (const std::exception& e) {
    return Status::Internal(std::string("chat template render failed: ") + e.what());
  }

  if (options.continue_final_message) {
    // transformers: final_msg_loc = rindex(final.strip()); keep through len(final.lstrip()) when
    // the text there equals the untrimmed final message, else through len(final.strip()).
    std::string_view stripped = jinja::PyStrip(final_text, nullptr, true, true);
    std::string_view lstripped = jinja::PyStrip(final_text, nullptr, true, false);
    size_t loc = rendered.rfind(stripped);
    if (loc == std::string::npos) {
      return Status::InvalidArgument(
          "continue_final_message is set but the final message does not appear in the rendered "
          "chat; the template may modify message content, so continuing it is not possible");
    }
    if (rendered.compare(loc, lstripped.size(), final_text) == 0) {
      rendered.resize(loc + lstripped.size());
    } else {
      rendered.resize(loc + stripped.size());
    }
  }
  return rendered;
}

}  // namespace kiln
