// ServerProcess: a server the load generator starts itself (the production-table preset runs
// `kiln serve` once per configuration). The child's stdout and stderr go to a log file; Start waits
// until the log shows "listening on http://HOST:PORT" (the server picked PORT), the child exits (an
// error carrying the last lines of its log: the server's own message) or the timeout passes
// (the child is killed). Stop sends SIGTERM, waits up to a grace period, then SIGKILL. Poll says
// whether the server still runs ("the server exited with status N" once it died).
//
// No server outlives the load generator: the child asks the kernel for SIGTERM when the thread that
// started it exits (PR_SET_PDEATHSIG: a killed or crashed tool), and every running server's pid is
// kept in a fixed table that TerminateAllFromSignalHandler (async-signal-safe) stops, for the
// tool's SIGINT / SIGTERM handler.
//
// Thread-compatible (start servers from one thread: the death signal follows the starting thread);
// Linux only.
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
  // Ok while the server runs; Unavailable("the server exited with status N; log: ...") or "... was
  // killed by signal N ..." once it has died (every later call says the same).
  Status Poll();
  const std::string& base_url() const { return base_url_; }
  // The last `max_lines` non-empty lines of the log.
  std::string LogTail(int max_lines) const;

  // From a signal handler: SIGTERM to every running server, up to grace_s for them to exit (a
  // second SIGTERM half-way: kiln serve then stops draining), then SIGKILL; reaps them all.
  // Async-signal-safe.
  static void TerminateAllFromSignalHandler(double grace_s);

 private:
  pid_t pid_ = -1;
  std::string log_path_;
  std::string base_url_;
  std::string exit_message_;  // set once Poll saw the server die
};

}  // namespace kiln::bench
