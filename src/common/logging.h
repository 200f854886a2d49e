// Minimal leveled logging to stderr: KILN_LOG(INFO) << "..." ; thread-safe (one write per line).
// The level threshold is set once by apps/ (SetLogLevel); core code never reads the environment.
#pragma once

#include <sstream>

namespace kiln {

enum class LogLevel : int { DEBUG = 0, INFO = 1, WARNING = 2, ERROR = 3 };

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();

namespace internal {
class LogMessage final {
 public:
  LogMessage(LogLevel level, const char* file, int line);
  ~LogMessage();
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};
}  // namespace internal
}  // namespace kiln

#define KILN_LOG(level)                                                         \
  if (::kiln::LogLevel::level < ::kiln::GetLogLevel()) {                        \
  } else                                                                        \
    ::kiln::internal::LogMessage(::kiln::LogLevel::level, __FILE__, __LINE__).stream()
