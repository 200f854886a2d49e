// The kiln binary's subcommands: each parses its own flags from argv[2..] and returns the process
// exit code (0 ok, 2 usage/bad input, 1 other failure), printing one error line on stderr.
#pragma once

namespace kiln::cli {
int RunGenerate(int argc, char** argv);
int RunTokenize(int argc, char** argv);
int RunFlow(int argc, char** argv);  // flow.cc (built with kiln_workflow)
int RunQuantize(int argc, char** argv);  // quantize.cc
int RunEval(int argc, char** argv);      // eval.cc
}  // namespace kiln::cli

// Defined in serve.cc / bench.cc (global namespace, as their owners declared them).
int RunServe(int argc, char** argv);
int RunBench(int argc, char** argv);
