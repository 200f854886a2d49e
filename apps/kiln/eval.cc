// `kiln eval`: the accuracy of quantized configurations against the unquantized model, one table.
//
//   kiln eval --model PATH[,PATH...] [--text FILE[,FILE...]] [--configs none,fp8,fp8/fp8]
//       [--max-len 512] [--device cpu|cuda] [--json] [engine flags]
//
// Each config is WEIGHTS[/KV]: WEIGHTS a --quantization value (none, fp8, auto), KV a
// --kv-cache-dtype value (default auto). The first config is the reference. For every model the
// sequences are the prompts of PATH/reference.json (input_ids + generated) or, without one,
// PATH/reference.safetensors' input_ids, plus every --text file tokenized with the model's
// tokenizer (BOS added), each cut to --max-len tokens. Every config's backend (created exactly as
// the engine creates it) runs each sequence teacher-forced; the table gives, per model and config,
// the tokens compared, mean and max KL(P_ref || P) per token, top-1 agreement with the reference
// and the perplexity on the reference sequences and on the text files (quant/accuracy.h).
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/backend_factory.h"
#include "flags.h"
#include "kiln/tokenizer.h"
#include "model/mapped_file.h"
#include "model/safetensors.h"
#include "quant/accuracy.h"
#include "subcommands.h"

namespace kiln::cli {
namespace {

struct EvalConfig {
  std::string label;  // as given: "fp8/fp8"
  std::string quantization;
  std::string kv_cache_dtype;
};

std::vector<std::string> SplitComma(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t end = std::min(s.find(',', start), s.size());
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

StatusOr<std::vector<EvalConfig>> ParseConfigs(const std::string& text) {
  std::vector<EvalConfig> configs;
  for (const std::string& c : SplitComma(text)) {
    const size_t slash = c.find('/');
    EvalConfig e{c, c.substr(0, slash), slash == std::string::npos ? "auto" : c.substr(slash + 1)};
    configs.push_back(std::move(e));
  }
  if (configs.size() < 2)
    return Status::InvalidArgument(
        "--configs needs a reference and at least one config to compare");
  return configs;
}

// reference.json prompts (input_ids + generated), else reference.safetensors' input_ids.
StatusOr<std::vector<std::vector<int32_t>>> ReferenceSequences(const std::string& model_path) {
  std::vector<std::vector<int32_t>> seqs;
  if (FileExists(model_path + "/reference.json")) {
    KILN_ASSIGN_OR_RETURN(std::string text, ReadFileToString(model_path + "/reference.json"));
    const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.contains("prompts") || !j["prompts"].is_array())
      return Status::InvalidArgument(model_path + "/reference.json: no prompts array");
    for (const nlohmann::json& p : j["prompts"]) {
      if (!p.contains("input_ids") || !p["input_ids"].is_array())
        return Status::InvalidArgument(model_path + "/reference.json: a prompt has no input_ids");
      std::vector<int32_t> ids = p["input_ids"].get<std::vector<int32_t>>();
      if (p.contains("generated")) {
        const auto gen = p["generated"].get<std::vector<int32_t>>();
        ids.insert(ids.end(), gen.begin(), gen.end());
      }
      seqs.push_back(std::move(ids));
    }
  } else if (FileExists(model_path + "/reference.safetensors")) {
    KILN_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(model_path + "/reference.safetensors"));
    if (file->Has("input_ids")) {
      KILN_ASSIGN_OR_RETURN(std::vector<int32_t> ids, ReadSafetensorsInt32(*file, "input_ids"));
      seqs.push_back(std::move(ids));
    }
  }
  return seqs;
}

struct Row {
  std::string model, config;
  quant::AccuracyStats all, reference, text;
};

Status Eval(int argc, char** argv, bool* json_out) {
  Flags f;
  DeclareEngineFlags(&f);
  f.Value("text", "comma-separated text files to evaluate (tokenized with BOS)");
  f.Value("configs",
          "comma-separated WEIGHTS[/KV] configs, the first is the reference "
          "(default none,fp8,fp8/fp8)");
  f.Value("max-len", "longest sequence in tokens (default 512)");
  f.Bool("json", "print one JSON object per row instead of a table");
  KILN_RETURN_IF_ERROR(f.Parse(argc, argv, 2));
  *json_out = f.GetBool("json", false);
  const std::vector<std::string> models = SplitComma(f.GetString("model"));
  if (models.empty()) return Status::InvalidArgument("--model is required");
  KILN_ASSIGN_OR_RETURN(std::vector<EvalConfig> configs,
                        ParseConfigs(f.GetString("configs", "none,fp8,fp8/fp8")));
  KILN_ASSIGN_OR_RETURN(int64_t max_len, f.GetInt("max-len", 512));
  if (max_len < 2) return Status::InvalidArgument("--max-len must be at least 2");
  const std::vector<std::string> text_files = SplitComma(f.GetString("text"));

  std::vector<Row> rows;
  for (const std::string& model_path : models) {
    EngineOptions base;
    KILN_RETURN_IF_ERROR(EngineOptionsFromFlags(f, &base));
    base.model.model_path = model_path;
    base.model.tokenizer_path = f.GetString("tokenizer");
    base.cache.num_blocks = (max_len + base.cache.block_size - 1) / base.cache.block_size;
    // Sequences: [0, num_reference) from the references, the rest from the text files.
    KILN_ASSIGN_OR_RETURN(std::vector<std::vector<int32_t>> seqs, ReferenceSequences(model_path));
    const size_t num_reference = seqs.size();
    if (!text_files.empty()) {
      const std::string tok_path =
          base.model.tokenizer_path.empty() ? model_path : base.model.tokenizer_path;
      StatusOr<std::unique_ptr<Tokenizer>> tok = LoadTokenizer(tok_path);
      if (!tok.ok()) return tok.status().WithContext("tokenizer for --text");
      for (const std::string& file : text_files) {
        KILN_ASSIGN_OR_RETURN(std::string text, ReadFileToString(file));
        seqs.push_back((*tok)->Encode(text, /*add_special_tokens=*/true));
      }
    }
    for (auto& s : seqs) {
      if (static_cast<int64_t>(s.size()) > max_len) s.resize(static_cast<size_t>(max_len));
    }
    if (seqs.empty())
      return Status::InvalidArgument(model_path +
                                     ": no reference.json / reference.safetensors "
                                     "sequences and no --text");
    // Reference logits once, then each config against them.
    std::vector<std::vector<float>> ref_logits;
    int vocab = 0;
    for (size_t c = 0; c < configs.size(); ++c) {
      EngineOptions o = base;
      o.model.quantization = configs[c].quantization;
      o.cache.kv_cache_dtype = configs[c].kv_cache_dtype;
      KILN_RETURN_IF_ERROR(o.Validate().WithContext("config " + configs[c].label));
      KILN_ASSIGN_OR_RETURN(auto model, LoadModel(o.model));
      KILN_ASSIGN_OR_RETURN(auto backend, CreateBackend(model, o));
      vocab = backend->config().vocab_size;
      Row row{model_path, configs[c].label, {}, {}, {}};
      for (size_t s = 0; s < seqs.size(); ++s) {
        KILN_ASSIGN_OR_RETURN(std::vector<float> logits,
                              quant::TeacherForcedLogits(*backend, seqs[s]));
        if (c == 0) {
          ref_logits.push_back(std::move(logits));
          logits = ref_logits.back();
        }
        quant::AccuracyStats one;
        quant::AccumulateAccuracy(ref_logits[s].data(), logits.data(),
                                  static_cast<int64_t>(seqs[s].size()), vocab,
                                  std::span<const int32_t>(seqs[s]).subspan(1), &one);
        row.all.Merge(one);
        (s < num_reference ? row.reference : row.text).Merge(one);
      }
      const bool asks_fp8 = (o.model.quantization == "fp8" && configs[0].quantization != "fp8") ||
                            (o.cache.kv_cache_dtype == "fp8" && configs[0].kv_cache_dtype != "fp8");
      if (c > 0 && row.all.kl_sum == 0.0 && asks_fp8) {
        std::fprintf(stderr,
                     "kiln eval: warning: config %s gives logits identical to the reference on "
                     "%s: this backend may not honour --quantization %s / --kv-cache-dtype %s\n",
                     configs[c].label.c_str(), model_path.c_str(), o.model.quantization.c_str(),
                     o.cache.kv_cache_dtype.c_str());
      }
      rows.push_back(std::move(row));
    }
  }

  if (*json_out) {
    for (const Row& r : rows) {
      nlohmann::json j = {{"model", r.model},
                          {"config", r.config},
                          {"tokens", r.all.tokens},
                          {"mean_kl", r.all.MeanKl()},
                          {"max_kl", r.all.kl_max},
                          {"top1_agreement", r.all.Top1Agreement()},
                          {"confident_top1_agreement", r.all.ConfidentTop1Agreement()},
                          {"confident_tokens", r.all.confident_tokens},
                          {"ppl_reference", r.reference.Perplexity()},
                          {"ppl_text", r.text.Perplexity()}};
      std::cout << j.dump() << "\n";
    }
    return Status::Ok();
  }
  std::printf("%-40s %-12s %7s %11s %11s %8s %9s %10s %10s\n", "model", "config", "tokens",
              "mean KL", "max KL", "top-1", "top-1(c)", "ppl(ref)", "ppl(text)");
  for (const Row& r : rows) {
    std::string model = r.model;
    if (model.size() > 40) model = "..." + model.substr(model.size() - 37);
    std::printf("%-40s %-12s %7lld %11.3e %11.3e %7.2f%% %8.2f%% %10.4f %10.4f\n", model.c_str(),
                r.config.c_str(), static_cast<long long>(r.all.tokens), r.all.MeanKl(),
                r.all.kl_max, 100.0 * r.all.Top1Agreement(), 100.0 * r.all.ConfidentTop1Agreement(),
                r.reference.Perplexity(), r.text.Perplexity());
  }
  std::printf(
      "reference config: %s; KL(P_ref || P) in nats per token; top-1(c): agreement where "
      "the reference's top-1 leads by >= %.1f; perplexity over the next tokens of the "
      "reference sequences / the --text files (0: none)\n",
      configs[0].label.c_str(), quant::kConfidentMargin);
  return Status::Ok();
}

}  // namespace

int RunEval(int argc, char** argv) {
  bool json = false;
  Status s = Eval(argc, argv, &json);
  if (!s.ok()) {
    std::fprintf(stderr, "kiln eval: error: %s\n", s.message().c_str());
    return s.code() == StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}

}  // namespace kiln::cli
