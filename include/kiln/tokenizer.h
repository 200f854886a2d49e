// The public tokenizer interface: text ⇄ token ids, chat-template rendering, and streaming
// detokenization. Implementations live in src/tokenizer/ (tokenizer.json BPE in its byte-level and
// SentencePiece/byte-fallback flavours, and GGUF-embedded vocabularies).
//
// Thread-safety: a Tokenizer is immutable after creation; all const methods may be called from
// any number of threads at once. An IncrementalDetokenizer belongs to one stream (one thread).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "kiln/status.h"

namespace kiln {

struct ChatTemplateOptions {
  bool add_generation_prompt = true;
  // Assistant prefill: render, then cut right after the final assistant message's content (HF
  // transformers / vLLM semantics). Requires the last message to be from the assistant.
  bool continue_final_message = false;
  // ordered_json: objects keep their key order as Python dicts do, so `tojson` of a tool schema
  // renders byte for byte as HF transformers renders it.
  nlohmann::ordered_json tools;         // null or an array of tool definitions
  nlohmann::ordered_json documents;     // null or an array
  nlohmann::ordered_json extra_kwargs;  // object of extra template variables (enable_thinking)
  std::string chat_template;         // non-empty → overrides the tokenizer's template
  // > 0: the rendered text may be at most this long, and the render may build at most 16× this
  // in strings and containers (checked while rendering); 0 → the renderer's defaults (256 MiB).
  size_t max_rendered_bytes = 0;
};

// Streaming decode of one sequence: feed token ids one at a time, get the text that became final.
// Never emits a partial UTF-8 sequence; the concatenation of all emitted pieces plus Flush() equals
// Tokenizer::Decode of all ids.
class IncrementalDetokenizer {
 public:
  virtual ~IncrementalDetokenizer() = default;
  // Feeds ids whose text the caller already has (a prompt's last tokens), before the first Push:
  // they give the next tokens their decoding context (a SentencePiece piece's leading space, a
  // byte-level merge) and are never emitted, even where they end in byte pieces that would
  // otherwise wait for a following token.
  virtual void Prime(std::span<const int32_t> context_ids) = 0;
  // Appends `id` and returns the newly final text (possibly empty).
  virtual std::string Push(int32_t id) = 0;
  // Returns whatever is still held back (e.g. an incomplete UTF-8 tail, replaced by U+FFFD).
  virtual std::string Flush() = 0;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Text → ids. add_special_tokens adds what the tokenizer's post-processor adds (e.g. BOS for
  // Llama/SentencePiece tokenizers); special/added tokens written in the text are always matched.
  virtual std::vector<int32_t> Encode(std::string_view text, bool add_special_tokens) const = 0;
  // Ids → text. Ids outside the vocabulary are an error.
  virtual StatusOr<std::string> Decode(std::span<const int32_t> ids,
                                       bool skip_special_tokens) const = 0;
  virtual std::unique_ptr<IncrementalDetokenizer> NewDetokenizer(bool skip_special_tokens) const = 0;

  virtual int vocab_size() const = 0;  // number of ids incl. added tokens
  // The raw bytes a token stands for when decoded in context (byte-level BPE bytes, SentencePiece
  // pieces with ▁ as space, byte-fallback <0xAB> as that byte). Special tokens return their text.
  // Used by constrained decoding to build its vocabulary index.
  virtual std::string TokenBytes(int32_t id) const = 0;
  virtual std::string IdToPiece(int32_t id) const = 0;  // the vocabulary string as stored
  virtual int32_t PieceToId(std::string_view piece) const = 0;  // -1 when absent
  virtual bool IsSpecial(int32_t id) const = 0;  // control / special added tokens

  virtual int32_t bos_token_id() const = 0;  // -1 when none
  virtual int32_t eos_token_id() const = 0;  // -1 when none
  virtual std::string bos_token() const = 0;
  virtual std::string eos_token() const = 0;

  // Renders `messages` (an array of {role, content, ...}) with the chat template.
  virtual bool has_chat_template() const = 0;
  virtual StatusOr<std::string> ApplyChatTemplate(const nlohmann::ordered_json& messages,
                                                  const ChatTemplateOptions& options) const = 0;
};

// Loads a tokenizer from: a directory holding tokenizer.json (+ tokenizer_config.json for the
// chat template and special-token names), a tokenizer.json file, or a .gguf file (embedded vocab).
StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& path);

}  // namespace kiln
