#include "bench/server_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

namespace kiln::bench {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The pids of the running servers (0: a free slot), for TerminateAllFromSignalHandler. A server
// past the table's size still dies with the tool (its death signal), only without the wait.
constexpr int kMaxServers = 16;
std::atomic<pid_t> g_servers[kMaxServers];
static_assert(std::atomic<pid_t>::is_always_lock_free, "read from a signal handler");

void Register(pid_t pid) {
  for (std::atomic<pid_t>& slot : g_servers) {
    pid_t free_slot = 0;
    if (slot.compare_exchange_strong(free_slot, pid)) return;
  }
}

void Unregister(pid_t pid) {
  for (std::atomic<pid_t>& slot : g_servers) {
    pid_t expected = pid;
    if (slot.compare_exchange_strong(expected, 0)) return;
  }
}

std::string ExitText(int status) {
  if (WIFSIGNALED(status)) {
    return "the server was killed by signal " + std::to_string(WTERMSIG(status));
  }
  return "the server exited with status " +
         std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : status);
}

}  // namespace

ServerProcess::~ServerProcess() { Stop(); }

Status ServerProcess::Start(const std::vector<std::string>& argv, const std::string& log_path,
                            double timeout_s) {
  if (argv.empty()) return Status::InvalidArgument("server command is empty");
  log_path_ = log_path;
  const int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IOError("cannot create server log '" + log_path + "'");
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    close(fd);
    return Status::IOError("fork failed");
  }
  if (pid == 0) {
    // SIGTERM when the tool dies, however it dies; a tool that died before this line is seen here.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(1);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    const int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    execv(args[0], args.data());
    const char msg[] = "exec failed\n";
    [[maybe_unused]] ssize_t n = write(STDERR_FILENO, msg, sizeof(msg) - 1);
    _exit(127);
  }
  close(fd);
  pid_ = pid;
  exit_message_.clear();
  Register(pid_);
  const std::regex listening(R"(listening on http://([^:/\s]+):(\d+))");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (true) {
    std::smatch m;
    const std::string log = ReadAll(log_path_);
    if (std::regex_search(log, m, listening)) {
      const std::string host = m[1].str() == "0.0.0.0" ? "127.0.0.1" : m[1].str();
      base_url_ = "http://" + host + ":" + m[2].str();
      return Status::Ok();
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      Unregister(pid_);
      pid_ = -1;
      std::string tail = LogTail(3);
      if (tail.empty()) tail = ExitText(status);
      return Status::Unavailable(tail);
    }
    if (std::chrono::steady_clock::now() > deadline) {
      Stop(5.0);
      return Status::Unavailable("the server did not start listening within " +
                                 std::to_string(static_cast<int>(timeout_s)) +
                                 " s; log: " + LogTail(3));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

void ServerProcess::Stop(double grace_s) {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(grace_s);
  int status = 0;
  while (waitpid(pid_, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  Unregister(pid_);
  pid_ = -1;
}

Status ServerProcess::Poll() {
  if (!exit_message_.empty()) return Status::Unavailable(exit_message_);
  if (pid_ <= 0) return Status::Unavailable("the server is not running");
  int status = 0;
  const pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == 0) return Status::Ok();
  exit_message_ = r == pid_ ? ExitText(status) : "the server is gone (waitpid failed)";
  const std::string tail = LogTail(3);
  if (!tail.empty()) exit_message_ += "; log: " + tail;
  Unregister(pid_);
  pid_ = -1;
  return Status::Unavailable(exit_message_);
}

void ServerProcess::TerminateAllFromSignalHandler(double grace_s) {
  pid_t pids[kMaxServers];
  int n = 0;
  for (std::atomic<pid_t>& slot : g_servers) {
    const pid_t pid = slot.load();
    if (pid > 0) {
      pids[n++] = pid;
      kill(pid, SIGTERM);
    }
  }
  const timespec step = {0, 20 * 1000 * 1000};
  const int steps = static_cast<int>(grace_s / 0.02);
  int left = n;
  for (int i = 0; i < steps && left > 0; ++i) {
    nanosleep(&step, nullptr);
    left = 0;
    for (int k = 0; k < n; ++k) {
      if (pids[k] <= 0) continue;
      int status = 0;
      if (waitpid(pids[k], &status, WNOHANG) != 0) {
        pids[k] = 0;  // reaped (or not ours any more)
      } else {
        ++left;
        if (i == steps / 2) kill(pids[k], SIGTERM);  // kiln serve: a second signal ends draining
      }
    }
  }
  for (int k = 0; k < n; ++k) {
    if (pids[k] <= 0) continue;
    kill(pids[k], SIGKILL);
    int status = 0;
    waitpid(pids[k], &status, 0);
  }
  for (std::atomic<pid_t>& slot : g_servers) slot.store(0);
}

std::string ServerProcess::LogTail(int max_lines) const {
  std::istringstream in(ReadAll(log_path_));
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t\r") != std::string::npos) lines.push_back(line);
  }
  std::string out;
  const size_t first = lines.size() > static_cast<size_t>(max_lines) ? lines.size() - max_lines : 0;
  for (size_t i = first; i < lines.size(); ++i) out += (out.empty() ? "" : " | ") + lines[i];
  return out;
}

}  // namespace kiln::bench
