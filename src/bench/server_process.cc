#include "bench/server_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

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
  const pid_t pid = fork();
  if (pid < 0) {
    close(fd);
    return Status::IOError("fork failed");
  }
  if (pid == 0) {
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
      pid_ = -1;
      std::string tail = LogTail(3);
      if (tail.empty()) tail = "the server exited with status " + std::to_string(status);
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
  pid_ = -1;
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
