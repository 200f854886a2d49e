// `kiln flow`: workflows from the command line.
//
//   kiln flow run FILE [--input k=v]... [--inputs JSON] [--base-url URL] [--api-key KEY]
//       [--model NAME] [--user KEY] [--stream] [--trace] [--timeout S] [--kv PATH]
//       [--audio-dir DIR] [--engine MODEL_PATH [--chat-template FILE]]
//     Runs the workflow once against an OpenAI-compatible server (--base-url, e.g. a `kiln serve`),
//     or with --engine on a kiln engine in this process (llm nodes without a base_url; CPU)
//     and prints the result as JSON (with --trace: every node's record; with --stream: the events
//     as JSON lines while it runs, then the result). Exit 0 when the run succeeded, 1 when it
//     failed, 2 for bad input.
//   kiln flow validate FILE
//     Parses and compiles the workflow; prints "ok: N nodes, M edges" or the error (exit 2).
//   kiln flow import DIFY.yml [--output FILE] [--model NAME]
//     Converts a Dify DSL export (start, llm, if-else, template-transform, http-request, answer,
//     end) to a kiln workflow in YAML; other node types are named in the error. --model replaces
//     the model names the file uses.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>

#include "subcommands.h"
#include "kiln/engine.h"
#include "workflow/engine_llm.h"
#include "workflow/dify_import.h"
#include "workflow/executor.h"
#include "workflow/spec.h"
#include "workflow/workflow.h"

namespace kiln::cli {
namespace {

using workflow::Json;

struct FlowArgs {
  std::string file;
  std::vector<std::pair<std::string, std::string>> values;  // --name value, in order
  bool stream = false, trace = false;
};

const char* kUsage =
    "usage: kiln flow run FILE [--input k=v]... [--inputs JSON] [--base-url URL] [--api-key KEY]\n"
    "                         [--model NAME] [--user KEY] [--stream] [--trace] [--timeout S]\n"
    "                         [--kv PATH] [--audio-dir DIR] [--engine MODEL_PATH\n"
    "                         [--chat-template FILE]]\n"
    "       kiln flow validate FILE\n"
    "       kiln flow import DIFY.yml [--output FILE] [--model NAME]\n";

Status ParseArgs(int argc, char** argv, const std::vector<std::string>& value_flags,
                 FlowArgs* out) {
  for (int i = 3; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--stream") {
      out->stream = true;
    } else if (a == "--trace") {
      out->trace = true;
    } else if (a.rfind("--", 0) == 0) {
      std::string name = a.substr(2), value;
      const size_t eq = name.find('=');
      if (eq != std::string::npos) {
        value = name.substr(eq + 1);
        name.resize(eq);
      } else {
        if (i + 1 >= argc) return Status::InvalidArgument("--" + name + " needs a value");
        value = argv[++i];
      }
      bool known = false;
      for (const auto& f : value_flags) known = known || f == name;
      if (!known) return Status::InvalidArgument("unknown flag --" + name);
      out->values.emplace_back(name, value);
    } else if (out->file.empty()) {
      out->file = a;
    } else {
      return Status::InvalidArgument("unexpected argument '" + a + "'");
    }
  }
  if (out->file.empty()) return Status::InvalidArgument("a workflow FILE is required");
  return Status::Ok();
}

std::string Last(const FlowArgs& a, const std::string& name, const std::string& def = "") {
  std::string v = def;
  for (const auto& [k, val] : a.values) {
    if (k == name) v = val;
  }
  return v;
}

StatusOr<std::shared_ptr<const workflow::Workflow>> Load(const std::string& file) {
  KILN_ASSIGN_OR_RETURN(workflow::WorkflowSpec spec, workflow::LoadSpecFile(file));
  auto w = workflow::Workflow::Compile(std::move(spec));
  if (!w.ok()) return w.status().WithContext(file);
  return w;
}

int Fail(const Status& s) {
  std::fprintf(stderr, "kiln flow: %s\n", s.ToString().c_str());
  return s.code() == StatusCode::kInvalidArgument || s.code() == StatusCode::kNotFound ? 2 : 1;
}

int Run(int argc, char** argv) {
  FlowArgs a;
  if (Status s = ParseArgs(argc, argv,
                           {"input", "inputs", "base-url", "api-key", "model", "user", "timeout",
                            "kv", "audio-dir", "engine", "chat-template"},
                           &a);
      !s.ok()) {
    return Fail(s);
  }
  auto w = Load(a.file);
  if (!w.ok()) return Fail(w.status());
  Json inputs = Json::object();
  if (const std::string j = Last(a, "inputs"); !j.empty()) {
    inputs = Json::parse(j, nullptr, false);
    if (inputs.is_discarded() || !inputs.is_object()) {
      return Fail(Status::InvalidArgument("--inputs must be a JSON object"));
    }
  }
  for (const auto& [k, v] : a.values) {
    if (k != "input") continue;
    const size_t eq = v.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Fail(Status::InvalidArgument("--input takes name=value (got '" + v + "')"));
    }
    const std::string name = v.substr(0, eq), value = v.substr(eq + 1);
    // A declared non-string input takes JSON (numbers, booleans, lists); strings stay as written.
    Json typed = value;
    for (const auto& in : (*w)->spec().inputs) {
      if (in.name == name && in.type != "string") {
        Json parsed = Json::parse(value, nullptr, false);
        if (!parsed.is_discarded()) typed = std::move(parsed);
      }
    }
    inputs[name] = std::move(typed);
  }
  workflow::ServicesOptions so;
  so.llm_base_url = Last(a, "base-url");
  so.llm_api_key = Last(a, "api-key");
  so.default_model = Last(a, "model");
  so.kv_path = Last(a, "kv", ":memory:");
  so.audio_dir = Last(a, "audio-dir");
  if (Status s = so.Validate(); !s.ok()) return Fail(s.WithContext("--base-url"));
  // --engine: llm nodes without a base_url generate in this process.
  std::unique_ptr<Engine> engine;
  std::unique_ptr<Generator> generator;
  std::unique_ptr<workflow::GeneratorLlm> local_llm;
  if (const std::string model = Last(a, "engine"); !model.empty()) {
    EngineOptions eo;
    eo.model.model_path = model;
    auto e = Engine::Create(eo);
    if (!e.ok()) return Fail(e.status().WithContext("--engine"));
    engine = std::move(*e);
    GeneratorOptions go;
    if (const std::string t = Last(a, "chat-template"); !t.empty()) {
      std::ifstream tf(t, std::ios::binary);
      if (!tf) return Fail(Status::InvalidArgument("--chat-template: cannot read '" + t + "'"));
      std::stringstream ts;
      ts << tf.rdbuf();
      go.chat_template = ts.str();
    }
    generator = std::make_unique<Generator>(engine.get(), go);
    local_llm = std::make_unique<workflow::GeneratorLlm>(generator.get());
    so.local_llm = local_llm.get();
  }
  workflow::Services services(so);
  workflow::RunOptions ro;
  ro.inputs = std::move(inputs);
  ro.user = Last(a, "user");
  const std::string timeout = Last(a, "timeout");
  if (!timeout.empty()) {
    char* end = nullptr;
    ro.timeout_s = std::strtod(timeout.c_str(), &end);
    if (end == timeout.c_str() || *end != '\0' || ro.timeout_s <= 0) {
      return Fail(Status::InvalidArgument("--timeout must be a positive number of seconds"));
    }
  }
  std::mutex out_mu;
  if (a.stream) {
    ro.on_event = [&](const workflow::WorkflowEvent& e) {
      std::lock_guard<std::mutex> lock(out_mu);
      std::printf("%s\n", Json{{"event", e.type}, {"data", e.data}}.dump().c_str());
      std::fflush(stdout);
    };
  }
  workflow::Executor executor(&services);
  workflow::RunResult r = executor.Run(**w, std::move(ro));
  if (engine) engine->Shutdown(/*abort_running=*/true);
  std::printf("%s\n", r.ToJson(a.trace).dump(2).c_str());
  if (r.status != "succeeded")
    std::fprintf(stderr, "kiln flow: run %s: %s\n", r.status.c_str(), r.error.c_str());
  return r.status == "succeeded" ? 0 : 1;
}

int Validate(int argc, char** argv) {
  FlowArgs a;
  if (Status s = ParseArgs(argc, argv, {}, &a); !s.ok()) return Fail(s);
  auto w = Load(a.file);
  if (!w.ok()) return Fail(w.status());
  std::printf("ok: %d nodes, %zu edges\n", (*w)->num_nodes(), (*w)->edges().size());
  return 0;
}

int Import(int argc, char** argv) {
  FlowArgs a;
  if (Status s = ParseArgs(argc, argv, {"output", "model"}, &a); !s.ok()) return Fail(s);
  std::ifstream in(a.file, std::ios::binary);
  if (!in) return Fail(Status::NotFound("cannot read '" + a.file + "'"));
  std::stringstream ss;
  ss << in.rdbuf();
  workflow::DifyImportOptions options;
  options.model = Last(a, "model");
  auto result = workflow::ImportDify(ss.str(), options);
  if (!result.ok()) return Fail(result.status().WithContext(a.file));
  for (const auto& note : result->notes)
    std::fprintf(stderr, "kiln flow import: note: %s\n", note.c_str());
  const std::string out = Last(a, "output");
  if (out.empty()) {
    std::fputs(result->yaml.c_str(), stdout);
  } else {
    std::ofstream f(out, std::ios::binary);
    f << result->yaml;
    if (!f) return Fail(Status::IOError("cannot write '" + out + "'"));
    std::fprintf(stderr, "kiln flow import: wrote %s\n", out.c_str());
  }
  return 0;
}

}  // namespace

int RunFlow(int argc, char** argv) {
  if (argc < 3 || !std::strcmp(argv[2], "--help") || !std::strcmp(argv[2], "help")) {
    std::fputs(kUsage, argc < 3 ? stderr : stdout);
    return argc < 3 ? 2 : 0;
  }
  const std::string cmd = argv[2];
  if (cmd == "run") return Run(argc, argv);
  if (cmd == "validate") return Validate(argc, argv);
  if (cmd == "import") return Import(argc, argv);
  std::fprintf(stderr, "kiln flow: unknown command '%s'\n%s", cmd.c_str(), kUsage);
  return 2;
}

}  // namespace kiln::cli
