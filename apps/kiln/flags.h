// A small command-line flag parser for kiln's subcommands: `--name value`, `--name=value` and
// boolean `--name` / `--no-name`. Every flag must be declared; unknown flags, missing values and
// malformed numbers are errors naming the flag. Flags are parsed only in apps/ (DESIGN.md).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "kiln/options.h"
#include "kiln/status.h"

namespace kiln::cli {

class Flags final {
 public:
  // Declares a flag taking a value / a boolean switch.
  void Value(const std::string& name, const std::string& help);
  void Bool(const std::string& name, const std::string& help);
  // Parses argv[first..argc). Positional arguments are rejected.
  Status Parse(int argc, char** argv, int first);

  bool Has(const std::string& name) const;
  std::string GetString(const std::string& name, const std::string& fallback = "") const;
  StatusOr<int64_t> GetInt(const std::string& name, int64_t fallback) const;
  // The same for an int field: a value outside the 32-bit range is an error (it was cut).
  StatusOr<int> GetInt32(const std::string& name, int fallback) const;
  StatusOr<double> GetDouble(const std::string& name, double fallback) const;
  // Boolean: --name → true, --no-name → false, absent → fallback.
  bool GetBool(const std::string& name, bool fallback) const;
  std::string Usage() const;

 private:
  struct Spec {
    bool is_bool = false;
    std::string help;
  };
  std::map<std::string, Spec> specs_;
  std::map<std::string, std::string> values_;
};

// Declares the engine flags shared by serve / generate / bench (named like vLLM's).
void DeclareEngineFlags(Flags* flags);
// Fills EngineOptions from parsed flags and validates them.
Status EngineOptionsFromFlags(const Flags& flags, EngineOptions* options);

// Parses "1,2,3" into ids.
StatusOr<std::vector<int32_t>> ParseIdList(const std::string& text);

}  // namespace kiln::cli
