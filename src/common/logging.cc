#include "common/logging.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>

namespace kiln {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::INFO)};
}

void SetLogLevel(LogLevel level) { g_level.store(static_cast<int>(level)); }
LogLevel GetLogLevel() { return static_cast<LogLevel>(g_level.load(std::memory_order_relaxed)); }

namespace internal {
LogMessage::LogMessage(LogLevel level, const char* file, int line) : level_(level) {
  static const char* kNames = "DIWE";
  const char* base = std::strrchr(file, '/');
  stream_ << kNames[static_cast<int>(level)] << " " << (base ? base + 1 : file) << ":" << line
          << "] ";
}
LogMessage::~LogMessage() {
  stream_ << '\n';
  std::string s = stream_.str();
  std::fwrite(s.data(), 1, s.size(), stderr);
}
}  // namespace internal
}  // namespace kiln
