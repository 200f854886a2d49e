#include "bench/workload.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

namespace kiln::bench {
namespace {

using json = nlohmann::json;

// Common English words; with a leading space each is one token for most BPE vocabularies.
constexpr const char* kWords[] = {
    "time",     "person", "year",   "way",     "day",    "thing", "man",    "world",   "life",
    "hand",     "part",   "child",  "eye",     "woman",  "place", "work",   "week",    "case",
    "point",    "number", "group",  "problem", "fact",   "be",    "have",   "do",      "say",
    "get",      "make",   "go",     "know",    "take",   "see",   "come",   "think",   "look",
    "want",     "give",   "use",    "find",    "tell",   "ask",   "seem",   "feel",    "try",
    "leave",    "call",   "good",   "new",     "first",  "last",  "long",   "great",   "little",
    "own",      "other",  "old",    "right",   "big",    "high",  "small",  "large",   "next",
    "early",    "young",  "few",    "public",  "bad",    "same",  "able",   "to",      "of",
    "in",       "for",    "on",     "with",    "at",     "by",    "from",   "up",      "about",
    "into",     "over",   "after",  "the",     "and",    "a",     "that",   "it",      "not",
    "he",       "as",     "you",    "this",    "but",    "his",   "they",   "her",     "she",
    "or",       "an",     "will",   "my",      "one",    "all",   "would",  "there",   "their",
    "what",     "so",     "out",    "if",      "who",    "which", "go",     "me",      "when",
    "can",      "like",   "no",     "just",    "him",    "your",  "some",   "could",   "them",
    "than",     "then",   "now",    "only",    "its",    "also",  "back",   "two",     "how",
    "our",      "well",   "even",   "because", "any",    "these", "most",   "us",      "water",
    "house",    "story",  "friend", "money",   "night",  "room",  "book",   "city",    "home",
    "school",   "food",   "music",  "garden",  "river",  "road",  "train",  "morning", "happy",
    "quiet",    "bright", "simple", "warm",    "clear",  "kind",  "help",   "plan",    "answer",
    "question", "idea",   "light",  "table",   "window", "paper", "letter", "game",    "class",
    "market",   "office", "car",    "tree"};
constexpr int kNumWords = sizeof(kWords) / sizeof(kWords[0]);

constexpr const char* kRoles[] = {
    "travel agent",    "math tutor",      "support engineer", "cooking coach",  "legal assistant",
    "fitness trainer", "history teacher", "career adviser",   "product expert", "writing editor"};

uint64_t Mix(uint64_t a, uint64_t b) {
  uint64_t x = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull + (a << 6) + (a >> 2));
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  return x;
}

int UniformInt(std::mt19937_64* rng, int lo, int hi) {
  if (hi <= lo) return lo;
  const uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
  return lo + static_cast<int>((*rng)() % span);
}

double Uniform01(std::mt19937_64* rng) {
  return static_cast<double>((*rng)() >> 11) * (1.0 / 9007199254740992.0);
}

// ---- chat ------------------------------------------------------------------------------------

class ChatWorkload final : public Workload {
 public:
  explicit ChatWorkload(const WorkloadOptions& o) : o_(o) {
    for (int p = 0; p < o_.num_personas; ++p) {
      std::mt19937_64 rng(Mix(o_.seed, 0x5e7a000000ull + static_cast<uint64_t>(p)));
      const int words = o_.num_personas == 1
                            ? o_.system_words_min
                            : o_.system_words_min + (o_.system_words_max - o_.system_words_min) *
                                                        p / (o_.num_personas - 1);
      std::string text = "You are " + std::string(kRoles[p % 10]) + " number " + std::to_string(p) +
                         ". Answer briefly and kindly. Background notes:";
      text += " " + RandomWords(&rng, words);
      personas_.push_back(std::move(text));
    }
    slots_.resize(static_cast<size_t>(o_.num_conversations));
    for (int s = 0; s < o_.num_conversations; ++s) StartConversation(s, 0.0);
  }

  std::optional<BenchRequest> Next(double now_s, double* ready_at_s) override {
    if (ready_.empty()) {
      *ready_at_s = std::numeric_limits<double>::infinity();
      return std::nullopt;
    }
    const auto [at, slot] = *ready_.begin();
    if (at > now_s) {
      *ready_at_s = at;
      return std::nullopt;
    }
    ready_.erase(ready_.begin());
    Conversation& c = slots_[static_cast<size_t>(slot)];
    c.pending_user = RandomWords(&c.rng, UniformInt(&c.rng, o_.user_words_min, o_.user_words_max));
    BenchRequest r;
    r.chat = true;
    r.messages.push_back({"system", personas_[static_cast<size_t>(c.persona)]});
    r.messages.insert(r.messages.end(), c.history.begin(), c.history.end());
    r.messages.push_back({"user", c.pending_user});
    r.max_tokens = UniformInt(&c.rng, o_.reply_tokens_min, o_.reply_tokens_max);
    r.ignore_eos = o_.ignore_eos;
    r.conversation = c.id;
    r.turn = c.turn;
    r.slot = slot;
    return r;
  }

  void Complete(const BenchRequest& r, const std::string& reply, bool ok, double now_s) override {
    if (r.slot < 0 || r.slot >= static_cast<int>(slots_.size())) return;
    Conversation& c = slots_[static_cast<size_t>(r.slot)];
    if (c.id != r.conversation) return;
    // A failed turn ends the conversation: retrying it with the same history could fail forever
    // (a history that outgrew the model's context).
    if (!ok || ++c.turn >= c.num_turns) {
      StartConversation(r.slot, now_s + ThinkTime(&c.rng));
      return;
    }
    c.history.push_back({"user", c.pending_user});
    c.history.push_back({"assistant", reply});
    ready_.insert({now_s + ThinkTime(&c.rng), r.slot});
  }

  std::string Describe() const override {
    return "chat: " + std::to_string(o_.num_conversations) + " conversations, " +
           std::to_string(o_.num_personas) + " personas (" + std::to_string(o_.system_words_min) +
           "-" + std::to_string(o_.system_words_max) + " words), " + std::to_string(o_.turns_min) +
           "-" + std::to_string(o_.turns_max) + " turns, user " +
           std::to_string(o_.user_words_min) + "-" + std::to_string(o_.user_words_max) +
           " words, replies " + std::to_string(o_.reply_tokens_min) + "-" +
           std::to_string(o_.reply_tokens_max) + " tokens, think time " +
           std::to_string(o_.think_time_s).substr(0, 4) + " s" +
           (o_.ignore_eos ? ", ignore_eos" : "");
  }

 private:
  struct Conversation {
    int64_t id = 0;
    int persona = 0;
    int num_turns = 0;
    int turn = 0;
    std::mt19937_64 rng;
    std::vector<ChatMessage> history;
    std::string pending_user;
  };

  double ThinkTime(std::mt19937_64* rng) {
    if (o_.think_time_s <= 0) return 0.0;
    return -std::log(1.0 - Uniform01(rng)) * o_.think_time_s;
  }

  void StartConversation(int slot, double ready_at) {
    Conversation& c = slots_[static_cast<size_t>(slot)];
    c = Conversation{};
    c.id = next_id_++;
    c.rng.seed(Mix(o_.seed, static_cast<uint64_t>(c.id)));
    c.persona = UniformInt(&c.rng, 0, o_.num_personas - 1);
    c.num_turns = UniformInt(&c.rng, o_.turns_min, o_.turns_max);
    ready_.insert({ready_at, slot});
  }

  WorkloadOptions o_;
  std::vector<std::string> personas_;
  std::vector<Conversation> slots_;
  std::set<std::pair<double, int>> ready_;  // (ready at, slot) of conversations not in flight
  int64_t next_id_ = 0;
};

// ---- random / fixed / file -------------------------------------------------------------------

class RandomWorkload final : public Workload {
 public:
  explicit RandomWorkload(const WorkloadOptions& o) : o_(o), rng_(Mix(o.seed, 0xa11ull)) {}

  std::optional<BenchRequest> Next(double, double*) override {
    BenchRequest r;
    r.chat = false;
    r.prompt = RandomWords(&rng_, Scaled(o_.input_len));
    r.max_tokens = Scaled(o_.output_len);
    r.ignore_eos = true;
    return r;
  }
  void Complete(const BenchRequest&, const std::string&, bool, double) override {}
  std::string Describe() const override {
    if (o_.kind == "fixed") {
      return "fixed: " + std::to_string(o_.input_len) + " words in, " +
             std::to_string(o_.output_len) + " tokens out, ignore_eos";
    }
    return "random: " + std::to_string(o_.input_len) + " words in, " +
           std::to_string(o_.output_len) + " tokens out, range ratio " +
           std::to_string(o_.range_ratio).substr(0, 4) + ", ignore_eos";
  }

 private:
  int Scaled(int len) {
    if (o_.kind == "fixed" || o_.range_ratio <= 0) return len;
    const int lo = std::max(1, static_cast<int>(std::lround(len * (1.0 - o_.range_ratio))));
    const int hi = std::max(lo, static_cast<int>(std::lround(len * (1.0 + o_.range_ratio))));
    return UniformInt(&rng_, lo, hi);
  }
  WorkloadOptions o_;
  std::mt19937_64 rng_;
};

class FileWorkload final : public Workload {
 public:
  FileWorkload(std::string path, std::vector<BenchRequest> requests)
      : path_(std::move(path)), requests_(std::move(requests)) {}
  std::optional<BenchRequest> Next(double, double*) override {
    BenchRequest r = requests_[next_ % requests_.size()];
    ++next_;
    return r;
  }
  void Complete(const BenchRequest&, const std::string&, bool, double) override {}
  std::string Describe() const override {
    return "file: " + path_ + " (" + std::to_string(requests_.size()) + " requests, cycled)";
  }

 private:
  std::string path_;
  std::vector<BenchRequest> requests_;
  size_t next_ = 0;
};

StatusOr<std::vector<BenchRequest>> ReadRequestFile(const WorkloadOptions& o) {
  std::ifstream in(o.path);
  if (!in) return Status::InvalidArgument("--workload: cannot read file '" + o.path + "'");
  std::vector<BenchRequest> out;
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = o.path + ":" + std::to_string(line_no) + ": ";
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      return Status::InvalidArgument(where + "not a JSON object");
    }
    BenchRequest r;
    r.max_tokens = o.output_len;
    if (j.contains("messages")) {
      if (!j["messages"].is_array() || j["messages"].empty()) {
        return Status::InvalidArgument(where + "\"messages\" must be a non-empty array");
      }
      for (const json& m : j["messages"]) {
        if (!m.is_object() || !m.value("role", json()).is_string() ||
            !m.value("content", json()).is_string()) {
          return Status::InvalidArgument(where +
                                         "each message needs string \"role\" and \"content\"");
        }
        r.messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
      }
    } else if (j.contains("prompt") && j["prompt"].is_string()) {
      r.chat = false;
      r.prompt = j["prompt"].get<std::string>();
    } else {
      return Status::InvalidArgument(where + "needs \"prompt\" (string) or \"messages\"");
    }
    if (j.contains("max_tokens")) {
      if (!j["max_tokens"].is_number_integer() || j["max_tokens"].get<int64_t>() < 1 ||
          j["max_tokens"].get<int64_t>() > 1000000) {
        return Status::InvalidArgument(where + "\"max_tokens\" must be an integer in [1, 1e6]");
      }
      r.max_tokens = j["max_tokens"].get<int>();
    }
    if (j.contains("ignore_eos")) {
      if (!j["ignore_eos"].is_boolean()) {
        return Status::InvalidArgument(where + "\"ignore_eos\" must be a boolean");
      }
      r.ignore_eos = j["ignore_eos"].get<bool>();
    }
    out.push_back(std::move(r));
  }
  if (out.empty()) return Status::InvalidArgument("--workload: '" + o.path + "' has no requests");
  return out;
}

}  // namespace

std::string RandomWords(std::mt19937_64* rng, int num_words) {
  std::string out;
  out.reserve(static_cast<size_t>(num_words) * 6);
  for (int i = 0; i < num_words; ++i) {
    if (i) out += ' ';
    out += kWords[(*rng)() % kNumWords];
  }
  return out;
}

Status WorkloadOptions::Validate() const {
  if (kind != "chat" && kind != "random" && kind != "fixed" && kind != "file") {
    return Status::InvalidArgument("workload must be chat, random, fixed or a file, got '" + kind +
                                   "'");
  }
  auto range = [](const char* what, int lo, int hi, int min_allowed) -> Status {
    if (lo < min_allowed || hi < lo || hi > 10000000) {
      return Status::InvalidArgument(std::string(what) + ": need " + std::to_string(min_allowed) +
                                     " <= min <= max, got " + std::to_string(lo) + ".." +
                                     std::to_string(hi));
    }
    return Status::Ok();
  };
  if (kind == "random" || kind == "fixed" || kind == "file") {
    if (input_len < 1 || output_len < 1) {
      return Status::InvalidArgument("--input-len and --output-len must be positive");
    }
    if (!(range_ratio >= 0 && range_ratio < 1)) {
      return Status::InvalidArgument("--range-ratio must be in [0, 1)");
    }
  }
  if (kind == "chat") {
    if (num_conversations < 1 || num_conversations > 10000000) {
      return Status::InvalidArgument("--conversations must be in [1, 1e7]");
    }
    if (num_personas < 1 || num_personas > 100000) {
      return Status::InvalidArgument("--personas must be in [1, 1e5]");
    }
    KILN_RETURN_IF_ERROR(range("system prompt words", system_words_min, system_words_max, 0));
    KILN_RETURN_IF_ERROR(range("user turn words", user_words_min, user_words_max, 1));
    KILN_RETURN_IF_ERROR(range("reply tokens", reply_tokens_min, reply_tokens_max, 1));
    KILN_RETURN_IF_ERROR(range("turns", turns_min, turns_max, 1));
    if (!(think_time_s >= 0 && think_time_s < 1e6)) {
      return Status::InvalidArgument("--think-time must be in [0, 1e6) seconds");
    }
  }
  if (kind == "file" && path.empty()) return Status::InvalidArgument("workload file path missing");
  return Status::Ok();
}

StatusOr<std::unique_ptr<Workload>> CreateWorkload(const WorkloadOptions& options) {
  KILN_RETURN_IF_ERROR(options.Validate());
  if (options.kind == "chat") return std::unique_ptr<Workload>(new ChatWorkload(options));
  if (options.kind == "file") {
    KILN_ASSIGN_OR_RETURN(std::vector<BenchRequest> requests, ReadRequestFile(options));
    return std::unique_ptr<Workload>(new FileWorkload(options.path, std::move(requests)));
  }
  return std::unique_ptr<Workload>(new RandomWorkload(options));
}

}  // namespace kiln::bench
