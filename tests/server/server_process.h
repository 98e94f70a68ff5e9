// Runs the real quantmt-server binary for a test: on free loopback ports,
// with the shipped default model, stderr captured to a file.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace quantmt::testing {

// A loopback TCP port that was free a moment ago.
int FreePort();

class ServerProcess {
 public:
  // Starts `binary` with `extra_args` after the ports and host flags, and
  // waits (up to `timeout_s`) until the log says it is ready. Check ok().
  ServerProcess(const std::string& binary, const std::vector<std::string>& extra_args,
                double timeout_s = 120);
  ~ServerProcess();  // SIGKILL if still running

  bool ok() const { return ready_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }
  pid_t pid() const { return pid_; }
  std::string log() const;  // what it wrote to stderr so far
  // The log from its first sanitizer report on (ThreadSanitizer,
  // AddressSanitizer, LeakSanitizer, UBSan), or "" without one.
  std::string SanitizerReport() const;

  // Sends SIGTERM and waits up to `timeout_s`; the exit status, or -1.
  int Terminate(double timeout_s = 60);

 private:
  pid_t pid_ = -1;
  int port_ = 0, metrics_port_ = 0;
  std::string log_path_;
  bool ready_ = false;
};

// GET http://127.0.0.1:port/path; the body, or "" on failure.
std::string HttpGet(int port, const std::string& path);

// The value of one sample in Prometheus text (e.g.
// `quantmt_requests_total{rpc="Translate",model="default",code="OK"}`), or
// 0 when absent.
double SampleValue(const std::string& metrics, const std::string& series);

}  // namespace quantmt::testing
