// Generator: construction and Prepare (chat template, tokenization, id and length checks).
// Start / Generate and the event processing are in generation.cc.
#include <algorithm>
#include <random>
#include <string>

#include "common/check.h"
#include "kiln/engine.h"
#include "kiln/generation.h"

namespace kiln {
namespace {

// A normalizer can shrink text (NFKC, lowercase): the byte-size bound on a prompt allows for this
// factor before it calls a prompt too long without tokenizing it.
// RenderChat's render bound per byte of its messages' JSON (templates add markup per message).
constexpr size_t kRenderedPerInputByte = 4;
constexpr size_t kNormalizationSlack = 2;
constexpr size_t kMinPromptBytesLimit = size_t{64} << 10;

Status SetField(std::string* error_field, const char* field, Status status) {
  if (error_field != nullptr) *error_field = field;
  return status;
}

Status CheckIds(const std::vector<int32_t>& ids, int vocab_size) {
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size) {
      return Status::InvalidArgument("token id " + std::to_string(id) +
                                     " is outside the vocabulary (size " +
                                     std::to_string(vocab_size) + ")");
    }
  }
  return Status::Ok();
}

}  // namespace

Status GeneratorOptions::Validate() const {
  if (detokenizer_context_tokens < 0 || detokenizer_context_tokens > 64) {
    return Status::InvalidArgument(
        "GeneratorOptions.detokenizer_context_tokens must be in [0, 64]");
  }
  return Status::Ok();
}

Generator::Generator(Engine* engine, GeneratorOptions options)
    : engine_(engine), options_(std::move(options)), tokenizer_(engine->tokenizer()) {
  KILN_CHECK(options_.Validate().ok()) << options_.Validate().message();
  const ModelInfo& info = engine_->model_info();
  vocab_size_ = info.vocab_size > 0 ? info.vocab_size
                                    : (tokenizer_ != nullptr ? tokenizer_->vocab_size() : 0);
  max_model_len_ = info.max_model_len;
  const int configured = engine_->options().scheduler.max_model_len;
  if (configured > 0 && (max_model_len_ <= 0 || configured < max_model_len_)) {
    max_model_len_ = configured;
  }
  id_salt_ = (uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
  if (tokenizer_ != nullptr) {
    for (int32_t id = 0; id < tokenizer_->vocab_size(); ++id) {
      max_token_bytes_ = std::max(max_token_bytes_, tokenizer_->TokenBytes(id).size());
    }
  }
}

Generator::~Generator() = default;

StatusOr<std::string> Generator::RenderChatText(const nlohmann::ordered_json& messages,
                                                const ChatTemplateOptions& options,
                                                size_t max_rendered_bytes) const {
  if (tokenizer_ == nullptr) {
    return Status::InvalidArgument("the served model has no tokenizer for chat messages");
  }
  if (!messages.is_array() || messages.empty()) {
    return Status::InvalidArgument("'messages' must be a non-empty array");
  }
  ChatTemplateOptions co = options;
  if (co.chat_template.empty()) co.chat_template = options_.chat_template;
  if (co.chat_template.empty() && !tokenizer_->has_chat_template()) {
    return Status::InvalidArgument(
        "the served model has no chat template; start the server with --chat-template or use "
        "/v1/completions");
  }
  // Bounded while rendering (template amplification).
  if (co.max_rendered_bytes == 0 || co.max_rendered_bytes > max_rendered_bytes) {
    co.max_rendered_bytes = max_rendered_bytes;
  }
  return tokenizer_->ApplyChatTemplate(messages, co);
}

StatusOr<std::vector<int32_t>> Generator::RenderChat(const nlohmann::ordered_json& messages,
                                                     const ChatTemplateOptions& options,
                                                     bool add_special_tokens,
                                                     std::string* error_field) const {
  // Not a prompt (no length limit, e.g. /tokenize): the bound scales with the input instead.
  const size_t bound = std::max(max_prompt_bytes(), messages.dump().size() * kRenderedPerInputByte);
  auto text = RenderChatText(messages, options, bound);
  if (!text.ok()) {
    // As Prepare: a template the request brought is at fault, else the messages.
    return SetField(error_field, options.chat_template.empty() ? "messages" : "chat_template",
                    text.status());
  }
  return tokenizer_->Encode(*text, add_special_tokens);
}

Status Generator::CheckLength(size_t num_prompt_tokens, const GenerationRequest& request,
                              int* max_tokens) const {
  const std::string limit = std::to_string(max_model_len_);
  if (num_prompt_tokens == 0) return Status::InvalidArgument("the prompt is empty (0 tokens)");
  if (request.fill_max_tokens) {
    if (num_prompt_tokens >= static_cast<size_t>(max_model_len_)) {
      return Status::OutOfRange(
          "This model's maximum context length is " + limit + " tokens. However, your prompt has " +
          std::to_string(num_prompt_tokens) + " tokens, which leaves no room for the completion.");
    }
    *max_tokens = max_model_len_ - static_cast<int>(num_prompt_tokens);
    return Status::Ok();
  }
  const int64_t total = static_cast<int64_t>(num_prompt_tokens) + request.sampling.max_tokens;
  if (total > max_model_len_) {
    return Status::OutOfRange("This model's maximum context length is " + limit +
                              " tokens. However, you requested " + std::to_string(total) +
                              " tokens (" + std::to_string(num_prompt_tokens) + " in the prompt, " +
                              std::to_string(request.sampling.max_tokens) +
                              " in the completion). Please reduce the prompt or max_tokens.");
  }
  *max_tokens = request.sampling.max_tokens;
  return Status::Ok();
}

size_t Generator::max_prompt_bytes() const {
  // Every token stands for at most max_token_bytes_ bytes of (normalized) text.
  const size_t bound = static_cast<size_t>(std::max(max_model_len_, 1)) *
                       std::max<size_t>(max_token_bytes_, 1) * kNormalizationSlack;
  return std::max(bound, kMinPromptBytesLimit);
}

Status Generator::CheckPromptBytes(size_t num_bytes) const {
  if (tokenizer_ == nullptr || num_bytes <= max_prompt_bytes()) return Status::Ok();
  return Status::OutOfRange(
      "This model's maximum context length is " + std::to_string(max_model_len_) +
      " tokens, and the prompt's " + std::to_string(num_bytes) + " bytes cannot fit in it (limit " +
      std::to_string(max_prompt_bytes()) + " bytes); it was rejected without tokenizing.");
}

Status Generator::Encode(const std::string& text, const GenerationRequest& request,
                         std::vector<int32_t>* ids) const {
  // A text this long cannot fit: refuse it without spending the time to tokenize it.
  KILN_RETURN_IF_ERROR(CheckPromptBytes(text.size()));
  *ids = tokenizer_->Encode(text, request.add_special_tokens);
  return Status::Ok();
}

StatusOr<PreparedGeneration> Generator::Prepare(GenerationRequest request,
                                                std::string* error_field) const {
  const bool chat = !request.messages.is_null();
  const char* prompt_field = chat ? "messages" : "prompt";
  if (request.n < 1) return SetField(error_field, "n", Status::InvalidArgument("'n' must be >= 1"));
  if (chat == !request.prompts.empty()) {
    return SetField(error_field, prompt_field,
                    Status::InvalidArgument("give either chat messages or prompts"));
  }
  const bool needs_tokenizer = chat || !request.logprob_token_strings.empty() ||
                               !request.stop.empty() ||
                               std::any_of(request.prompts.begin(), request.prompts.end(),
                                           [](const GenerationPrompt& p) { return p.is_text; });
  if (needs_tokenizer && tokenizer_ == nullptr) {
    return SetField(error_field, prompt_field,
                    Status::InvalidArgument("the model has no tokenizer: give token ids, no text"));
  }
  if (chat) {
    // Templates skip what they cannot read: a message without a role would silently vanish.
    if (!request.messages.is_array() || request.messages.empty()) {
      return SetField(error_field, "messages",
                      Status::InvalidArgument("'messages' must be a non-empty array"));
    }
    for (size_t i = 0; i < request.messages.size(); ++i) {
      const auto& m = request.messages[i];
      const std::string name = "messages[" + std::to_string(i) + "]";
      if (!m.is_object()) {
        return SetField(error_field, "messages",
                        Status::InvalidArgument("'" + name + "' must be an object"));
      }
      if (!m.contains("role") || !m["role"].is_string()) {
        return SetField(error_field, "messages",
                        Status::InvalidArgument("'" + name + ".role' must be a string"));
      }
    }
  }
  SamplingParams& sp = request.sampling;
  for (const auto& s : request.logprob_token_strings) {
    const auto ids = tokenizer_->Encode(s, false);
    if (ids.size() != 1) {
      return SetField(error_field, "logprob_token_ids",
                      Status::InvalidArgument("'logprob_token_ids' entry '" + s + "' is " +
                                              std::to_string(ids.size()) + " tokens, not one"));
    }
    sp.chosen_logprob_token_ids.push_back(ids[0]);
  }
  request.logprob_token_strings.clear();
  if (Status s = CheckIds(sp.chosen_logprob_token_ids, vocab_size_); !s.ok()) {
    return SetField(error_field, "logprob_token_ids", s);
  }
  if (Status s = CheckIds(sp.stop_token_ids, vocab_size_); !s.ok()) {
    return SetField(error_field, "stop_token_ids", s);
  }

  PreparedGeneration out;
  if (chat) {
    if (!request.assistant_prefill.empty()) {
      request.messages.push_back({{"role", "assistant"}, {"content", request.assistant_prefill}});
      request.chat_options.continue_final_message = true;
      request.chat_options.add_generation_prompt = false;
    }
    PreparedPrompt p;
    auto text = RenderChatText(request.messages, request.chat_options, max_prompt_bytes());
    if (!text.ok()) {
      // A template the request brought is at fault, else the messages.
      const char* field = request.chat_options.chat_template.empty() ? "messages" : "chat_template";
      if (text.status().message().find("output too large") != std::string::npos) {
        // The render passed max_prompt_bytes(): as CheckPromptBytes, a prompt that cannot fit.
        return SetField(
            error_field, field,
            Status::OutOfRange("This model's maximum context length is " +
                               std::to_string(max_model_len_) +
                               " tokens, and the rendered chat prompt cannot fit in "
                               "it (" +
                               text.status().message() + "); it was rejected without tokenizing."));
      }
      return SetField(error_field, field, text.status());
    }
    if (Status s = Encode(*text, request, &p.token_ids); !s.ok()) {
      return SetField(error_field, "messages", s);
    }
    const auto& last = request.messages.back();
    if (request.echo && request.chat_options.continue_final_message && last.is_object() &&
        last.contains("content") && last["content"].is_string()) {
      p.echo_text = last["content"].get<std::string>();
    }
    out.prompts.push_back(std::move(p));
  } else {
    for (auto& prompt : request.prompts) {
      PreparedPrompt p;
      if (prompt.is_text) {
        if (Status s = Encode(prompt.text, request, &p.token_ids); !s.ok()) {
          return SetField(error_field, "prompt", s);
        }
        if (request.echo) p.echo_text = std::move(prompt.text);
      } else {
        if (Status s = CheckIds(prompt.token_ids, vocab_size_); !s.ok()) {
          return SetField(error_field, "prompt", s);
        }
        if (request.echo && tokenizer_ != nullptr) {
          auto text = tokenizer_->Decode(prompt.token_ids, request.skip_special_tokens);
          if (text.ok()) p.echo_text = *text;
        }
        p.token_ids = std::move(prompt.token_ids);
      }
      out.prompts.push_back(std::move(p));
    }
    request.prompts.clear();  // moved into out.prompts
  }
  for (auto& p : out.prompts) {
    if (Status s = CheckLength(p.token_ids.size(), request, &p.max_tokens); !s.ok()) {
      return SetField(error_field, prompt_field, s);
    }
  }
  out.request = std::move(request);
  return out;
}

}  // namespace kiln
