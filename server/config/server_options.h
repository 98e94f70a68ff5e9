// quantmt-server's settings: flags, an optional TOML/INI config file
// (--config) and QUANTMT_* environment variables, in that order of
// precedence (CLI11 reads the file before the environment, so a file's value
// beats an image's environment default). Each flag's help says its default
// and unit.
#pragma once

#include <string>
#include <vector>

#include "quantmt/engine/status.h"
#include "server/admission/request_limits.h"

namespace CLI {
class App;
}

namespace quantmt::server {

struct ServerOptions {
  std::string host = "0.0.0.0";
  int port = 50051;         // gRPC
  int metrics_port = 9464;  // Prometheus /metrics; -1 disables it
  std::string model_root = "models";
  // Directories under model_root to load at start, as NAME or NAME=DIR;
  // the first is the default model.
  std::vector<std::string> models = {"default"};
  std::string data_dir;  // corpus root for Evaluate's named test sets
  std::string device = "cpu";
  bool cuda_graphs = true;  // CUDA float models: greedy steps replay CUDA graphs
  int threads = 0;          // intra-op threads per replica; 0: automatic
  int replicas = 0;         // per model; 0: automatic (see ModelSpec::replicas)
  // Scheduler (see SchedulerOptions in quantmt/engine/engine.h).
  int max_queued_sentences = 1024;
  int max_batch_sentences = 64;
  int max_batch_tokens = 4096;
  int max_batch_wait_ms = 2;
  RequestLimits limits;
  int max_send_message_bytes = 16 << 20;
  int max_concurrent_streams = 256;  // per connection
  int keepalive_time_s = 60;         // server pings an idle connection this often
  int keepalive_timeout_s = 20;      // and drops it when a ping goes unanswered this long
  std::string admin_token;           // empty: LoadModel/UnloadModel refused
  std::string tls_cert, tls_key;     // PEM files; both or neither
  int shutdown_grace_s = 30;         // SIGTERM: time to finish accepted work
};

// Adds every flag, its QUANTMT_* environment variable and --config to `app`,
// writing into `options`. Parse with app.parse(), then ValidateServerOptions.
void AddServerFlags(CLI::App& app, ServerOptions* options);

// What to tell a person whose --config file CLI11 refused with `what`
// ("INI was not able to parse server.++" for a [server] section): names the
// file and the line's key, and says what the file should hold.
std::string ConfigFileError(const std::string& path, const std::string& what);

// InvalidArgument naming the first setting out of range.
absl::Status ValidateServerOptions(const ServerOptions& options);

// "NAME" or "NAME=DIR" from --models.
struct ModelEntry {
  std::string name, directory;
};
ModelEntry ParseModelEntry(const std::string& entry);

}  // namespace quantmt::server
