// `kiln generate`: one prompt through the Engine, printed as it streams (or as one JSON object).
//
//   kiln generate --model PATH [--tokenizer PATH] (--prompt TEXT | --prompt-ids 1,2,3 |
//       --chat '[messages]') [--max-tokens N] [--temperature T] [--top-p P] [--top-k K]
//       [--min-p P] [--seed S] [--ignore-eos] [--device cpu|cuda] [--json]
//
// Without a prompt, generation starts from the model's BOS token. Temperature 0 means greedy.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "flags.h"
#include "kiln/engine.h"
#include "subcommands.h"

namespace kiln::cli {
namespace {

Status Generate(int argc, char** argv) {
  Flags f;
  DeclareEngineFlags(&f);
  f.Value("prompt", "prompt text (the tokenizer adds BOS where the model expects it)");
  f.Value("prompt-ids", "prompt as comma-separated token ids");
  f.Value("chat", "a JSON array of chat messages, rendered with the chat template");
  f.Value("max-tokens", "new tokens to generate (default 128)");
  f.Value("temperature", "sampling temperature; 0 = greedy (default 1.0)");
  f.Value("top-p", "nucleus sampling mass (default 1.0)");
  f.Value("top-k", "sample among the k most likely tokens (default off)");
  f.Value("min-p", "drop tokens below min-p × the top probability (default 0)");
  f.Value("seed", "sampling seed (same seed → same output)");
  f.Value("repetition-penalty", "HF repetition penalty (default 1.0)");
  f.Value("presence-penalty", "OpenAI presence penalty (default 0)");
  f.Value("frequency-penalty", "OpenAI frequency penalty (default 0)");
  f.Value("stop-token-ids", "comma-separated ids that end generation");
  f.Bool("ignore-eos", "keep generating past EOS");
  f.Bool("json", "print one JSON object instead of streaming text");
  KILN_RETURN_IF_ERROR(f.Parse(argc, argv, 2));

  EngineOptions options;
  options.scheduler.max_num_seqs = 1;
  KILN_RETURN_IF_ERROR(EngineOptionsFromFlags(f, &options));
  int given = f.Has("prompt") + f.Has("prompt-ids") + f.Has("chat");
  if (given > 1) return Status::InvalidArgument("give only one of --prompt, --prompt-ids, --chat");

  Request request;
  SamplingParams& sp = request.sampling;
  KILN_ASSIGN_OR_RETURN(int64_t max_tokens, f.GetInt("max-tokens", 128));
  sp.max_tokens = static_cast<int>(max_tokens);
  KILN_ASSIGN_OR_RETURN(double temperature, f.GetDouble("temperature", 1.0));
  sp.temperature = static_cast<float>(temperature);
  KILN_ASSIGN_OR_RETURN(double top_p, f.GetDouble("top-p", 1.0));
  sp.top_p = static_cast<float>(top_p);
  KILN_ASSIGN_OR_RETURN(int64_t top_k, f.GetInt("top-k", 0));
  sp.top_k = static_cast<int>(top_k);
  KILN_ASSIGN_OR_RETURN(double min_p, f.GetDouble("min-p", 0.0));
  sp.min_p = static_cast<float>(min_p);
  KILN_ASSIGN_OR_RETURN(double rep, f.GetDouble("repetition-penalty", 1.0));
  sp.repetition_penalty = static_cast<float>(rep);
  KILN_ASSIGN_OR_RETURN(double pres, f.GetDouble("presence-penalty", 0.0));
  sp.presence_penalty = static_cast<float>(pres);
  KILN_ASSIGN_OR_RETURN(double freq, f.GetDouble("frequency-penalty", 0.0));
  sp.frequency_penalty = static_cast<float>(freq);
  if (f.Has("seed")) {
    KILN_ASSIGN_OR_RETURN(int64_t seed, f.GetInt("seed", 0));
    sp.seed = static_cast<uint64_t>(seed);
  }
  if (f.Has("stop-token-ids")) {
    KILN_ASSIGN_OR_RETURN(sp.stop_token_ids, ParseIdList(f.GetString("stop-token-ids")));
  }
  sp.ignore_eos = f.GetBool("ignore-eos", false);
  const bool json_out = f.GetBool("json", false);

  KILN_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::Create(options));
  const Tokenizer* tok = engine->tokenizer();

  if (f.Has("prompt-ids")) {
    KILN_ASSIGN_OR_RETURN(request.prompt_token_ids, ParseIdList(f.GetString("prompt-ids")));
  } else if (f.Has("prompt") || f.Has("chat")) {
    if (tok == nullptr) {
      return Status::InvalidArgument(
          "no tokenizer found for this model: pass --tokenizer PATH or use --prompt-ids");
    }
    if (f.Has("prompt")) {
      request.prompt_token_ids = tok->Encode(f.GetString("prompt"), /*add_special_tokens=*/true);
    } else {
      nlohmann::ordered_json messages =
          nlohmann::ordered_json::parse(f.GetString("chat"), nullptr, false);
      if (messages.is_discarded() || !messages.is_array()) {
        return Status::InvalidArgument("--chat must be a JSON array of messages");
      }
      ChatTemplateOptions copts;
      copts.add_generation_prompt = true;
      if (!messages.empty() && messages.back().is_object() &&
          messages.back().value("role", "") == "assistant") {
        copts.add_generation_prompt = false;
        copts.continue_final_message = true;
      }
      KILN_ASSIGN_OR_RETURN(std::string prompt, tok->ApplyChatTemplate(messages, copts));
      request.prompt_token_ids = tok->Encode(prompt, /*add_special_tokens=*/false);
    }
  }
  if (request.prompt_token_ids.empty()) {
    int32_t bos = engine->model_info().bos_token_id;
    if (bos < 0 && tok != nullptr) bos = tok->bos_token_id();
    if (bos < 0) {
      return Status::InvalidArgument("empty prompt and the model has no BOS token to start from");
    }
    request.prompt_token_ids = {bos};
  }

  std::vector<int32_t> prompt_ids = request.prompt_token_ids;
  KILN_ASSIGN_OR_RETURN(std::unique_ptr<RequestStream> stream, engine->Submit(std::move(request)));
  std::unique_ptr<IncrementalDetokenizer> detok;
  if (tok != nullptr && !json_out) detok = tok->NewDetokenizer(/*skip_special_tokens=*/true);

  std::vector<int32_t> ids;
  RequestOutput out;
  FinishReason reason = FinishReason::kNone;
  Status error;
  while (stream->Next(&out)) {
    for (int32_t id : out.new_token_ids) {
      ids.push_back(id);
      if (detok) {
        std::string piece = detok->Push(id);
        std::fwrite(piece.data(), 1, piece.size(), stdout);
      }
    }
    if (detok) std::fflush(stdout);
    if (out.finished) {
      reason = out.finish_reason;
      error = out.error;
    }
  }
  if (reason == FinishReason::kError) return error.ok() ? Status::Internal("generation failed") : error;
  if (detok) {
    std::string rest = detok->Flush();
    std::fwrite(rest.data(), 1, rest.size(), stdout);
    std::fputc('\n', stdout);
  }
  if (json_out) {
    nlohmann::json j;
    j["prompt_token_ids"] = prompt_ids;
    j["token_ids"] = ids;
    if (tok != nullptr) {
      auto text = tok->Decode(ids, /*skip_special_tokens=*/true);
      if (text.ok()) j["text"] = *text;
    }
    j["finish_reason"] = FinishReasonName(reason);
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
  }
  engine->Shutdown(/*abort_running=*/true);
  return Status::Ok();
}

}  // namespace

int RunGenerate(int argc, char** argv) {
  Status s = Generate(argc, argv);
  if (!s.ok()) {
    std::fprintf(stderr, "kiln generate: error: %s\n", s.message().c_str());
    return s.code() == StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}

}  // namespace kiln::cli
