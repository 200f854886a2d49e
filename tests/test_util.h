// Helpers for cross-module tests: locating ../shared and the built kiln binary, running a command
// with stdin text and capturing stdout, stderr and the exit code.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace kiln::testing {

// KILN_SHARED, else $KILN_SOURCE_DIR/../shared, else ../shared.
inline std::string SharedDir() {
  if (const char* s = std::getenv("KILN_SHARED")) return s;
  if (const char* src = std::getenv("KILN_SOURCE_DIR")) return std::string(src) + "/../shared";
  return "../shared";
}

inline std::string KilnBinary() {
  const char* b = std::getenv("KILN_BUILD_DIR");
  return std::string(b ? b : "build") + "/apps/kiln/kiln";
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs `command` through /bin/sh with `input` on stdin.
inline CommandResult RunCommand(const std::string& command, const std::string& input = "") {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() /
                 ("kiln_cmd_" + std::to_string(::getpid()) + "_" + std::to_string(std::rand()));
  fs::create_directories(dir);
  std::string in_path = (dir / "in").string(), out_path = (dir / "out").string(),
              err_path = (dir / "err").string();
  { std::ofstream(in_path, std::ios::binary) << input; }
  std::string full = command + " <" + in_path + " >" + out_path + " 2>" + err_path;
  int status = std::system(full.c_str());
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = ReadFile(out_path);
  r.err = ReadFile(err_path);
  fs::remove_all(dir);
  return r;
}

}  // namespace kiln::testing
