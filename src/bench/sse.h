// Server-sent events and OpenAI stream chunks, as the load generator reads them. SseParser splits a
// byte stream (fed in arbitrary pieces) into events and hands each event's data (its "data:" lines
// joined by '\n') to a callback; comments and other fields are skipped; "\n", "\r\n" and "\r" line
// ends are accepted. ParseStreamChunk reads one OpenAI chunk (completions or chat completions).
//
// Thread-compatible; no I/O.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace kiln::bench {

class SseParser final {
 public:
  using EventFn = std::function<void(const std::string& data)>;
  explicit SseParser(EventFn on_event) : on_event_(std::move(on_event)) {}
  void Feed(std::string_view bytes);
  // Dispatches an event left without its closing blank line (end of stream).
  void Finish();

 private:
  void Line(std::string_view line);
  EventFn on_event_;
  std::string line_;
  std::string data_;
  bool has_data_ = false;
  bool last_was_cr_ = false;
};

// What one stream chunk (or a non-streaming response body) says.
struct StreamChunk {
  bool done = false;           // the "[DONE]" sentinel
  bool parse_error = false;    // not JSON / not an object
  std::string error;           // an {"error": ...} object's message
  std::string content;         // choices[0]: text, delta.content / delta.reasoning_content,
                               // message.content (non-streaming)
  std::string finish_reason;   // choices[0].finish_reason when set
  int64_t prompt_tokens = -1;  // usage, when present
  int64_t completion_tokens = -1;
  int64_t cached_tokens = -1;  // usage.prompt_tokens_details.cached_tokens
};

StreamChunk ParseStreamChunk(const std::string& data);

}  // namespace kiln::bench
