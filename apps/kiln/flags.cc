#include "flags.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <sstream>

namespace kiln::cli {

void Flags::Value(const std::string& name, const std::string& help) {
  specs_[name] = Spec{false, help};
}
void Flags::Bool(const std::string& name, const std::string& help) {
  specs_[name] = Spec{true, help};
}

Status Flags::Parse(int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(Usage().c_str(), stdout);
      std::exit(0);
    }
    if (arg.rfind("--", 0) != 0 || arg.size() == 2) {
      return Status::InvalidArgument("unexpected argument '" + arg + "'");
    }
    std::string name = arg.substr(2);
    std::optional<std::string> value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    auto it = specs_.find(name);
    if (it == specs_.end() && name.rfind("no-", 0) == 0) {
      auto neg = specs_.find(name.substr(3));
      if (neg != specs_.end() && neg->second.is_bool) {
        if (value) return Status::InvalidArgument("--" + name + " takes no value");
        values_[name.substr(3)] = "false";
        continue;
      }
    }
    if (it == specs_.end()) return Status::InvalidArgument("unknown flag --" + name);
    if (it->second.is_bool) {
      if (value && *value != "true" && *value != "false") {
        return Status::InvalidArgument("--" + name + " expects true or false, got '" + *value +
                                       "'");
      }
      values_[name] = value.value_or("true");
      continue;
    }
    if (!value) {
      if (i + 1 >= argc) return Status::InvalidArgument("--" + name + " needs a value");
      value = argv[++i];
    }
    values_[name] = *value;
  }
  return Status::Ok();
}

bool Flags::Has(const std::string& name) const { return values_.count(name) > 0; }

std::string Flags::GetString(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}

StatusOr<int64_t> Flags::GetInt(const std::string& name, int64_t fallback) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  const char* s = it->second.c_str();
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0') {
    return Status::InvalidArgument("--" + name + " expects an integer, got '" + it->second + "'");
  }
  return static_cast<int64_t>(v);
}

StatusOr<int> Flags::GetInt32(const std::string& name, int fallback) const {
  KILN_ASSIGN_OR_RETURN(int64_t v, GetInt(name, fallback));
  if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max()) {
    return Status::InvalidArgument("--" + name + " " + std::to_string(v) +
                                   " is out of range (at most " +
                                   std::to_string(std::numeric_limits<int32_t>::max()) + ")");
  }
  return static_cast<int>(v);
}

StatusOr<double> Flags::GetDouble(const std::string& name, double fallback) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  const char* s = it->second.c_str();
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(s, &end);
  if (errno != 0 || end == s || *end != '\0') {
    return Status::InvalidArgument("--" + name + " expects a number, got '" + it->second + "'");
  }
  return v;
}

bool Flags::GetBool(const std::string& name, bool fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second == "true";
}

std::string Flags::Usage() const {
  std::ostringstream os;
  for (const auto& [name, spec] : specs_) {
    os << "  --" << name << (spec.is_bool ? "" : " VALUE") << "\n      " << spec.help << "\n";
  }
  return os.str();
}

StatusOr<std::vector<int32_t>> ParseIdList(const std::string& text) {
  std::vector<int32_t> ids;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const char* s = item.c_str();
    while (*s == ' ') ++s;
    char* end = nullptr;
    errno = 0;
    long v = std::strtol(s, &end, 10);
    while (end && *end == ' ') ++end;
    if (errno != 0 || end == s || *end != '\0' || v < 0 || v > INT32_MAX) {
      return Status::InvalidArgument("bad token id '" + item + "' in id list");
    }
    ids.push_back(static_cast<int32_t>(v));
  }
  if (ids.empty()) return Status::InvalidArgument("empty id list");
  return ids;
}

}  // namespace kiln::cli
