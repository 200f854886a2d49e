// Workloads of the load generator: what each request of a benchmark run asks for. Deterministic
// for a seed: the n-th request of a list workload, and the k-th conversation of the chat workload
// (persona, number of turns, every user turn, every reply length, every think time), are functions
// of the seed alone. Which conversation an arrival serves depends on when replies come back (the
// server's timing); a conversation's history holds the replies the server actually sent.
//
//  chat    num_conversations conversations are live at once. Each has a persona (a system prompt of
//          system_words_min..max words, shared by the conversations of that persona), a number of
//          turns, user turns of user_words_min..max words and replies of reply_tokens_min..max
//          tokens; its history grows turn by turn. After a reply a conversation thinks for an
//          exponential think time before it is ready again; a finished conversation, or one whose
//          turn failed (its history may have outgrown the context: a retry could fail forever), is
//          replaced by a new one after a think time. An arrival takes the conversation that has
//          been ready longest, so a conversation's turns come back after about num_conversations
//          other requests: the working set of KV is set by num_conversations.
//  random  prompts of input_len words and max_tokens output_len, each scaled by a uniform factor in
//          [1 − range_ratio, 1 + range_ratio]; ignore_eos.
//  fixed   random with range_ratio 0.
//  file    a JSON-lines file, one request per line: {"prompt": "..."} (→ /v1/completions) or
//          {"messages": [...]} (→ /v1/chat/completions), optional "max_tokens", "ignore_eos";
//          served in order, cycling.
//
// Lengths are in words of a fixed list of common English words (most BPE tokenizers encode each as
// one token); the measured prompt and output tokens come from the server's usage report.
//
// Thread-compatible: a Workload is used from one thread (the runner's io thread).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "kiln/status.h"

namespace kiln::bench {

struct ChatMessage {
  std::string role;
  std::string content;
};

// One request to send. `chat` selects /v1/chat/completions (messages) over /v1/completions
// (prompt).
struct BenchRequest {
  bool chat = true;
  std::vector<ChatMessage> messages;
  std::string prompt;
  int max_tokens = 16;
  bool ignore_eos = false;
  int64_t conversation = -1;  // chat: the conversation's id; −1 otherwise
  int turn = 0;               // chat: 0-based turn within the conversation
  int slot = -1;              // chat: internal slot of the conversation
};

struct WorkloadOptions {
  std::string kind = "chat";  // chat | random | fixed | file
  std::string path;           // kind == file: the JSON-lines file
  uint64_t seed = 0;
  // random / fixed (and file lines without max_tokens: output_len)
  int input_len = 128;
  int output_len = 128;
  double range_ratio = 0.5;  // random only
  // chat
  int num_conversations = 1000;
  int num_personas = 8;
  int system_words_min = 300;
  int system_words_max = 1500;
  int user_words_min = 10;
  int user_words_max = 120;
  int reply_tokens_min = 24;
  int reply_tokens_max = 64;
  int turns_min = 3;
  int turns_max = 10;
  double think_time_s = 5.0;  // mean of the exponential think time; 0 = none
  bool ignore_eos = true;     // chat: hold replies to their drawn lengths
  Status Validate() const;
};

class Workload {
 public:
  virtual ~Workload() = default;
  // The next request ready at `now_s`, or nullopt when none is (then *ready_at_s says when one will
  // be; +inf when only a reply can make one ready).
  virtual std::optional<BenchRequest> Next(double now_s, double* ready_at_s) = 0;
  // The outcome of a request Next() returned: `reply` is the text the server sent (chat: appended
  // to the conversation's history when ok; a failed turn ends the conversation).
  virtual void Complete(const BenchRequest& request, const std::string& reply, bool ok,
                        double now_s) = 0;
  // A short description for reports ("chat: 1000 conversations, 8 personas, ...").
  virtual std::string Describe() const = 0;
};

StatusOr<std::unique_ptr<Workload>> CreateWorkload(const WorkloadOptions& options);

// `num_words` words drawn from the fixed word list with `rng`, space-separated.
std::string RandomWords(std::mt19937_64* rng, int num_words);

}  // namespace kiln::bench
