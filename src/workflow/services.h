// Services: what a workflow's nodes reach outside themselves, shared by every run of one process:
// the default model endpoint for llm / classify / embed nodes, the key-value stores of `store`
// nodes (SQLite by default, Redis when a node asks for it), and the directory TTS audio is written
// to. The CLI and the server each build one from their flags.
//
// Thread-safety: the options are immutable after construction; Kv() is safe from many threads
// (stores are opened once, under a mutex, and are themselves thread-safe).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "kiln/status.h"

namespace kiln::workflow {

class KvStore;
struct NodeContext;

// A chat completion served inside this process — `kiln serve`'s own engine — for llm nodes whose
// endpoint resolves to no base URL. `request` is the OpenAI chat request the node built (messages
// with the prefill as a final assistant message and continue_final_message, sampling,
// response_format); the result is {content, finish_reason, usage: {prompt_tokens,
// completion_tokens, total_tokens}}. It honours ctx's deadline and cancellation and calls
// `on_text` with each new piece of text. Implemented over kiln::Generator (engine_llm.h).
class LocalLlm {
 public:
  virtual ~LocalLlm() = default;
  virtual StatusOr<nlohmann::ordered_json> Chat(
      const nlohmann::ordered_json& request, const NodeContext& ctx,
      const std::function<void(const std::string&)>& on_text) const = 0;
};

struct ServicesOptions {
  std::string llm_base_url;   // e.g. http://127.0.0.1:8000 (an OpenAI-compatible server)
  std::string llm_api_key;    // sent as a bearer token to llm_base_url
  std::string default_model;  // used when an llm node names none ("" → the server's default)
  std::string kv_path = ":memory:";  // the SQLite file of `store` nodes
  std::string audio_dir;             // "" → TTS audio only inline (base64), never written to disk
  // In-process generation; when set, an llm node with no base_url (and no llm_base_url default)
  // runs on it instead of over HTTP. Not owned; must outlive the Services.
  const LocalLlm* local_llm = nullptr;
  Status Validate() const;
};

class Services final {
 public:
  explicit Services(ServicesOptions options);
  ~Services();
  Services(const Services&) = delete;
  Services& operator=(const Services&) = delete;

  const ServicesOptions& options() const { return options_; }
  // The store for `backend` ("sqlite", or a redis://host:port URL); opened on first use.
  StatusOr<KvStore*> Kv(const std::string& backend);

 private:
  ServicesOptions options_;
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<KvStore>> stores_;
};

}  // namespace kiln::workflow
