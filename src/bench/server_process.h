// ServerProcess: a server the load generator starts itself (the production-table preset runs
// `kiln serve` once per configuration). The child's stdout and stderr go to a log file; Start waits
// until the log shows "listening on http://HOST:PORT" (the server picked PORT), the child exits (an
// error carrying the last lines of its log: the server's own message) or the timeout passes
// (the child is killed). Stop sends SIGTERM, waits up to a grace period, then SIGKILL.
//
// Thread-compatible; POSIX only.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "kiln/status.h"

namespace kiln::bench {

class ServerProcess final {
 public:
  ServerProcess() = default;
  ~ServerProcess();  // Stop()
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // argv[0] is the program path. On success base_url() is "http://HOST:PORT".
  Status Start(const std::vector<std::string>& argv, const std::string& log_path, double timeout_s);
  void Stop(double grace_s = 30.0);
  const std::string& base_url() const { return base_url_; }
  // The last `max_lines` non-empty lines of the log.
  std::string LogTail(int max_lines) const;

 private:
  pid_t pid_ = -1;
  std::string log_path_;
  std::string base_url_;
};

}  // namespace kiln::bench
