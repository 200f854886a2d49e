// `kiln generate`: one prompt through kiln::Generator (include/kiln/generation.h), printed as it
// streams (or as one JSON object).
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
#include "kiln/generation.h"
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

  GenerationRequest request;
  SamplingParams& sp = request.sampling;
  KILN_ASSIGN_OR_RETURN(sp.max_tokens, f.GetInt32("max-tokens", 128));
  KILN_ASSIGN_OR_RETURN(double temperature, f.GetDouble("temperature", 1.0));
  sp.temperature = static_cast<float>(temperature);
  KILN_ASSIGN_OR_RETURN(double top_p, f.GetDouble("top-p", 1.0));
  sp.top_p = static_cast<float>(top_p);
  KILN_ASSIGN_OR_RETURN(sp.top_k, f.GetInt32("top-k", 0));
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
  if ((f.Has("prompt") || f.Has("chat")) && tok == nullptr) {
    return Status::InvalidArgument(
        "no tokenizer found for this model: pass --tokenizer PATH or use --prompt-ids");
  }
  if (f.Has("prompt-ids")) {
    KILN_ASSIGN_OR_RETURN(std::vector<int32_t> ids, ParseIdList(f.GetString("prompt-ids")));
    request.prompts.push_back(GenerationPrompt::TokenIds(std::move(ids)));
  } else if (f.Has("prompt")) {
    request.prompts.push_back(GenerationPrompt::Text(f.GetString("prompt")));
    request.add_special_tokens = true;
  } else if (f.Has("chat")) {
    request.messages = nlohmann::ordered_json::parse(f.GetString("chat"), nullptr, false);
    if (request.messages.is_discarded() || !request.messages.is_array()) {
      return Status::InvalidArgument("--chat must be a JSON array of messages");
    }
    // A last assistant message is a prefill: the reply continues it.
    const auto& last =
        request.messages.empty() ? nlohmann::ordered_json() : request.messages.back();
    const auto role = last.is_object() ? last.find("role") : last.end();
    if (role != last.end() && role->is_string() && *role == "assistant") {
      request.chat_options.add_generation_prompt = false;
      request.chat_options.continue_final_message = true;
    }
  } else {
    // No prompt: generation starts from the model's BOS token.
    int32_t bos = engine->model_info().bos_token_id;
    if (bos < 0 && tok != nullptr) bos = tok->bos_token_id();
    if (bos < 0) {
      return Status::InvalidArgument("empty prompt and the model has no BOS token to start from");
    }
    request.prompts.push_back(GenerationPrompt::TokenIds({bos}));
  }

  Generator generator(engine.get());
  KILN_ASSIGN_OR_RETURN(PreparedGeneration prepared, generator.Prepare(std::move(request)));
  const std::vector<int32_t> prompt_ids = prepared.prompts[0].token_ids;
  GenerationCallbacks callbacks;
  if (!json_out) {
    callbacks.on_delta = [](const GenerationDelta& delta, const GenerationChoice&) {
      std::fwrite(delta.text.data(), 1, delta.text.size(), stdout);
      std::fflush(stdout);
    };
  }
  KILN_ASSIGN_OR_RETURN(std::unique_ptr<Generation> generation,
                        generator.Start(std::move(prepared), std::move(callbacks)));
  const GenerationResult result = generation->Wait();
  engine->Shutdown(/*abort_running=*/true);
  const GenerationChoice& choice = result.choices.at(0);
  if (choice.finish_reason == FinishReason::kError) return choice.error;
  if (!json_out) {
    if (tok != nullptr) std::fputc('\n', stdout);
    return Status::Ok();
  }
  nlohmann::json j;
  j["prompt_token_ids"] = prompt_ids;
  j["token_ids"] = choice.token_ids;
  if (tok != nullptr) j["text"] = choice.text;
  j["finish_reason"] = FinishReasonName(choice.finish_reason);
  std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
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
