// StopMatcher: applies OpenAI `stop` strings to a stream of detokenized text pieces. Text that
// could still turn out to be the start of a stop string is held back until it is disambiguated, so
// a stop string never leaks into the output, also when it is split across several tokens.
//
// Not responsible for stop token ids (the engine handles those). Not thread-safe: one matcher per
// generated sequence, used by one thread at a time. Invariant: the concatenation of every
// returned piece equals the input text cut right before the first stop string (or right after it
// when include_stop_str is set), or the whole input when no stop string occurs.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kiln {

class StopMatcher final {
 public:
  StopMatcher(std::vector<std::string> stop_strings, bool include_stop_str);

  // Appends `text` and returns the text that became safe to emit. After a stop string matched,
  // stopped() is true and further calls return "". check == false (tokens within min_tokens, as
  // vLLM) appends without looking for a stop string in it; a stop string that ends in a later,
  // checked piece is still found, with its start held back from here.
  std::string Push(std::string_view text, bool check = true);
  // Returns whatever is still held back (call once at the end of the sequence).
  std::string Flush();

  bool stopped() const { return stopped_; }
  // The stop string that matched (empty when none).
  const std::string& matched() const { return matched_; }

 private:
  std::vector<std::string> stops_;
  bool include_stop_str_;
  size_t max_stop_len_ = 0;
  std::string pending_;
  bool stopped_ = false;
  std::string matched_;
};

}  // namespace kiln
