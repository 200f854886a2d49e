#include "workflow/engine_llm.h"

#include <condition_variable>
#include <mutex>

#include "kiln/engine.h"
#include "workflow/node.h"

namespace kiln::workflow {

StatusOr<Json> GeneratorLlm::Chat(const Json& body, const NodeContext& ctx,
                                  const std::function<void(const std::string&)>& on_text) const {
  GenerationRequest g;
  g.messages = body.value("messages", Json::array());
  if (body.value("continue_final_message", false) && !g.messages.empty() &&
      g.messages.back().value("role", "") == "assistant") {
    g.assistant_prefill = g.messages.back().value("content", "");
    g.messages.erase(g.messages.size() - 1);
  }
  g.chat_options.add_generation_prompt = true;
  SamplingParams& s = g.sampling;
  s.temperature = body.value("temperature", 1.0f);
  s.top_p = body.value("top_p", 1.0f);
  s.top_k = body.value("top_k", 0);
  s.min_p = body.value("min_p", 0.0f);
  s.max_tokens = body.value("max_tokens", 256);
  s.presence_penalty = body.value("presence_penalty", 0.0f);
  s.frequency_penalty = body.value("frequency_penalty", 0.0f);
  s.repetition_penalty = body.value("repetition_penalty", 1.0f);
  if (body.contains("seed") && body["seed"].is_number_integer())
    s.seed = body["seed"].get<uint64_t>();
  if (body.contains("stop")) {
    if (body["stop"].is_string()) g.stop.push_back(body["stop"].get<std::string>());
    if (body["stop"].is_array()) {
      for (const auto& x : body["stop"]) {
        if (x.is_string()) g.stop.push_back(x.get<std::string>());
      }
    }
  }
  const Json rf = body.value("response_format", Json());
  if (rf.is_object()) {
    if (rf.value("type", "") == "json_object")
      s.response_format.type = ResponseFormat::Type::kJsonObject;
    if (rf.value("type", "") == "json_schema") {
      s.response_format.type = ResponseFormat::Type::kJsonSchema;
      s.response_format.json_schema = rf["json_schema"]["schema"].dump();
    }
    KILN_RETURN_IF_ERROR(generator_->engine()->PrepareResponseFormat(s.response_format));
  }
  KILN_ASSIGN_OR_RETURN(PreparedGeneration prepared, generator_->Prepare(std::move(g)));

  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  GenerationResult result;
  GenerationCallbacks callbacks;
  callbacks.on_delta = [&on_text](const GenerationDelta& d, const GenerationChoice&) {
    if (!d.text.empty()) on_text(d.text);
  };
  callbacks.on_done = [&](const GenerationResult& r) {
    std::lock_guard<std::mutex> lock(mu);
    result = r;
    done = true;
    cv.notify_all();
  };
  KILN_ASSIGN_OR_RETURN(std::unique_ptr<Generation> gen,
                        generator_->Start(std::move(prepared), callbacks));
  bool timed_out = false;
  {
    std::unique_lock<std::mutex> lock(mu);
    while (!done) {
      cv.wait_for(lock, std::chrono::milliseconds(10));
      if (!done && (ctx.IsCancelled() || Clock::now() >= ctx.deadline)) {
        timed_out = !ctx.IsCancelled();
        lock.unlock();
        gen->Cancel();  // on_done still runs (choices end with kAbort)
        lock.lock();
        cv.wait(lock, [&] { return done; });
      }
    }
  }
  if (ctx.IsCancelled()) return Status::Aborted("generation cancelled");
  if (timed_out) return Status::Unavailable("in-process generation timed out");
  if (!result.error.ok()) return result.error;
  if (result.choices.empty()) return Status::Internal("generation returned no choice");
  const GenerationChoice& c = result.choices[0];
  return Json{{"content", c.text},
              {"finish_reason", FinishReasonName(c.finish_reason)},
              {"usage",
               {{"prompt_tokens", result.usage.prompt_tokens},
                {"completion_tokens", result.usage.completion_tokens},
                {"total_tokens", result.usage.prompt_tokens + result.usage.completion_tokens}}}};
}

}  // namespace kiln::workflow
