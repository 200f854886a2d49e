// kiln: one binary, subcommands. `kiln help` lists them; `kiln SUBCOMMAND --help` lists flags.
#include <cstdio>
#include <cstring>
#include <new>
#include <string>

#include "subcommands.h"

namespace {

void PrintUsage() {
  std::fputs(
      "usage: kiln SUBCOMMAND [flags]\n"
      "  generate   generate text from a prompt (--model PATH --prompt TEXT ...)\n"
      "  tokenize   JSON lines: text ⇄ ids, chat-template rendering (--model/--tokenizer PATH)\n"
      "  serve      OpenAI-compatible HTTP server (--model PATH --port 8000 ...)\n"
      "  bench      benchmarks: latency | throughput (offline), serve (SLO load generator)\n"
      "  flow       workflows: run | validate | import (a Dify DSL file)\n"
      "  quantize   write an FP8 checkpoint (--model IN --quantization fp8 --out DIR)\n"
      "  eval       accuracy of quantized configs vs the unquantized model (KL, top-1, ppl)\n",
      stderr);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "help") || !std::strcmp(argv[1], "--help") ||
      !std::strcmp(argv[1], "-h")) {
    PrintUsage();
    return argc < 2 ? 2 : 0;
  }
  std::string cmd = argv[1];
  // Memory that cannot be had (a model larger than an rlimit or cgroup allows, which the
  // pre-load check against physical memory cannot see) is an error message, not an abort.
  try {
    if (cmd == "generate") return kiln::cli::RunGenerate(argc, argv);
    if (cmd == "tokenize") return kiln::cli::RunTokenize(argc, argv);
    if (cmd == "quantize") return kiln::cli::RunQuantize(argc, argv);
    if (cmd == "eval") return kiln::cli::RunEval(argc, argv);
    if (cmd == "serve") return RunServe(argc, argv);
    if (cmd == "flow") return kiln::cli::RunFlow(argc, argv);
    if (cmd == "bench") return RunBench(argc, argv);
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr,
                 "kiln %s: error: out of memory (the model or the KV cache does not fit the "
                 "memory this process may use; see ulimit -v and the container's limit)\n",
                 cmd.c_str());
    return 1;
  }
  std::fprintf(stderr, "kiln: unknown subcommand '%s'\n", cmd.c_str());
  PrintUsage();
  return 2;
}
