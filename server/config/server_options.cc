#include "server/config/server_options.h"

#include <CLI/CLI.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace quantmt::server {
namespace {

// --flag_name reads QUANTMT_FLAG_NAME from the environment too.
template <typename T>
CLI::Option* AddFlag(CLI::App& app, const std::string& name, T& value, const std::string& help) {
  return app.add_option("--" + name, value, help)
      ->envname("QUANTMT_" + absl::AsciiStrToUpper(name))
      ->capture_default_str();
}

absl::Status CheckRange(const char* name, int64_t value, int64_t low, int64_t high) {
  if (value >= low && value <= high) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("--", name, " is ", value, ": use ", low, " to ", high));
}

}  // namespace

void AddServerFlags(CLI::App& app, ServerOptions* o) {
  app.set_config("--config", "",
                 "TOML or INI file with the same keys as the flags; flags given on the command "
                 "line win over it, and it wins over QUANTMT_* variables");
  // A misspelt key must not be ignored silently.
  app.allow_config_extras(CLI::config_extras_mode::error);
  AddFlag(app, "host", o->host, "Address to listen on (gRPC and metrics)");
  AddFlag(app, "port", o->port, "gRPC port (0: any free port)");
  AddFlag(app, "metrics_port", o->metrics_port, "Prometheus /metrics port (-1: off)");
  AddFlag(app, "model_root", o->model_root, "Directory holding the model directories");
  AddFlag(app, "models", o->models,
          "Models to load at start: NAME (the directory NAME under the root) or NAME=DIR; the "
          "first is the default")
      ->delimiter(',');
  AddFlag(app, "data_dir", o->data_dir, "Corpus root for Evaluate: DOMAIN/test*.{src,tgt}");
  AddFlag(app, "device", o->device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  AddFlag(app, "cuda_graphs", o->cuda_graphs,
          "With --device cuda, greedy requests decode on CUDA graphs (false: op by op)");
  AddFlag(app, "threads", o->threads,
          "Intra-op threads per replica (0: automatic; with --replicas 0, one replica of one "
          "thread per core)");
  AddFlag(app, "replicas", o->replicas, "Decoding workers per model (0: automatic)");
  AddFlag(app, "max_queued_sentences", o->max_queued_sentences,
          "Per model; beyond it requests are refused with RESOURCE_EXHAUSTED");
  AddFlag(app, "max_batch_sentences", o->max_batch_sentences, "Rows in a running batch");
  AddFlag(app, "max_batch_tokens", o->max_batch_tokens, "Source tokens in a running batch");
  AddFlag(app, "max_batch_wait_ms", o->max_batch_wait_ms, "Wait for a fuller batch, ms");
  RequestLimits& l = o->limits;
  AddFlag(app, "max_sentences", l.max_sentences, "Sentences per request");
  AddFlag(app, "max_sentence_bytes", l.max_sentence_bytes, "UTF-8 bytes per sentence");
  AddFlag(app, "max_request_bytes", l.max_request_bytes, "UTF-8 bytes of text per request");
  AddFlag(app, "max_sentence_tokens", l.max_sentence_tokens,
          "Source tokens per sentence (0: the model's max_source_positions)");
  AddFlag(app, "max_beam_size", l.max_beam_size, "Largest beam a request may ask for");
  AddFlag(app, "max_length", l.max_length, "Largest max_length a request may ask for");
  AddFlag(app, "default_beam_size", l.default_beam_size, "Beam when a request says 0");
  AddFlag(app, "default_max_length", l.default_max_length, "max_length when a request says 0");
  AddFlag(app, "max_evaluate_lines", l.max_evaluate_lines, "Lines per Evaluate request");
  AddFlag(app, "max_receive_message_bytes", l.max_receive_message_bytes,
          "Largest request message; larger ones get RESOURCE_EXHAUSTED (counted in the metrics "
          "up to twice this size; beyond, gRPC drops them uncounted)");
  AddFlag(app, "max_send_message_bytes", o->max_send_message_bytes, "Largest response message");
  AddFlag(app, "max_concurrent_streams", o->max_concurrent_streams, "Calls per connection");
  AddFlag(app, "keepalive_time_s", o->keepalive_time_s, "Ping idle connections this often, s");
  AddFlag(app, "keepalive_timeout_s", o->keepalive_timeout_s, "Drop after an unanswered ping, s");
  AddFlag(app, "admin_token", o->admin_token,
          "Bearer token for LoadModel/UnloadModel (empty: refused); prefer the environment");
  AddFlag(app, "tls_cert", o->tls_cert, "PEM certificate chain (with --tls_key: TLS)");
  AddFlag(app, "tls_key", o->tls_key, "PEM private key");
  AddFlag(app, "shutdown_grace_s", o->shutdown_grace_s,
          "On SIGTERM: time to finish accepted requests, s");
}

std::string ConfigFileError(const std::string& path, const std::string& what) {
  const std::string keys =
      "the keys are the flag names without the leading --, at the top level of the file (see "
      "--help)";
  constexpr std::string_view kUnparsed = "INI was not able to parse ";
  if (what.rfind(kUnparsed, 0) != 0) return absl::StrCat("--config ", path, ": ", what);
  std::string item = what.substr(kUnparsed.size());
  // CLI11 names a [section] header "SECTION.++" and a key inside one
  // "SECTION.KEY".
  constexpr std::string_view kSection = ".++";
  if (item.size() > kSection.size() &&
      item.compare(item.size() - kSection.size(), kSection.size(), kSection) == 0) {
    item.resize(item.size() - kSection.size());
    return absl::StrCat("--config ", path, ": section [", item, "] is not a setting: ", keys);
  }
  if (!item.empty() && item.front() == '[') {
    return absl::StrCat("--config ", path, ": cannot read the line '", item, "': ", keys);
  }
  return absl::StrCat("--config ", path, ": unknown key '", item, "': ", keys);
}

absl::Status ValidateServerOptions(const ServerOptions& o) {
  RETURN_IF_ERROR(CheckRange("port", o.port, 0, 65535));
  RETURN_IF_ERROR(CheckRange("metrics_port", o.metrics_port, -1, 65535));
  if (o.metrics_port > 0 && o.metrics_port == o.port) {
    return absl::InvalidArgumentError("--metrics_port must differ from --port");
  }
  RETURN_IF_ERROR(CheckRange("threads", o.threads, 0, 1024));
  RETURN_IF_ERROR(CheckRange("replicas", o.replicas, 0, 64));
  RETURN_IF_ERROR(CheckRange("max_queued_sentences", o.max_queued_sentences, 1, 1 << 24));
  RETURN_IF_ERROR(CheckRange("max_batch_sentences", o.max_batch_sentences, 1, 1 << 16));
  RETURN_IF_ERROR(CheckRange("max_batch_tokens", o.max_batch_tokens, 1, 1 << 24));
  RETURN_IF_ERROR(CheckRange("max_batch_wait_ms", o.max_batch_wait_ms, 0, 60000));
  const RequestLimits& l = o.limits;
  RETURN_IF_ERROR(CheckRange("max_sentences", l.max_sentences, 1, 1 << 20));
  RETURN_IF_ERROR(CheckRange("max_sentence_bytes", l.max_sentence_bytes, 1, 1 << 24));
  RETURN_IF_ERROR(CheckRange("max_request_bytes", l.max_request_bytes, 1, 1 << 30));
  RETURN_IF_ERROR(CheckRange("max_sentence_tokens", l.max_sentence_tokens, 0, 1 << 16));
  RETURN_IF_ERROR(CheckRange("max_beam_size", l.max_beam_size, 1, 64));
  RETURN_IF_ERROR(CheckRange("default_beam_size", l.default_beam_size, 1, l.max_beam_size));
  RETURN_IF_ERROR(CheckRange("max_length", l.max_length, 1, 1 << 16));
  RETURN_IF_ERROR(CheckRange("default_max_length", l.default_max_length, 1, l.max_length));
  RETURN_IF_ERROR(CheckRange("max_evaluate_lines", l.max_evaluate_lines, 1, 1 << 24));
  RETURN_IF_ERROR(
      CheckRange("max_receive_message_bytes", l.max_receive_message_bytes, 1024, 1 << 30));
  RETURN_IF_ERROR(CheckRange("max_send_message_bytes", o.max_send_message_bytes, 1024, 1 << 30));
  RETURN_IF_ERROR(CheckRange("max_concurrent_streams", o.max_concurrent_streams, 1, 1 << 20));
  RETURN_IF_ERROR(CheckRange("keepalive_time_s", o.keepalive_time_s, 1, 86400));
  RETURN_IF_ERROR(CheckRange("keepalive_timeout_s", o.keepalive_timeout_s, 1, 3600));
  RETURN_IF_ERROR(CheckRange("shutdown_grace_s", o.shutdown_grace_s, 0, 3600));
  if (o.tls_cert.empty() != o.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together: give both or neither");
  }
  for (const std::string& entry : o.models) {
    const ModelEntry model = ParseModelEntry(entry);
    if (model.name.empty() || model.directory.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--models entry \"", entry, "\" must be NAME or NAME=DIR"));
    }
  }
  return absl::OkStatus();
}

ModelEntry ParseModelEntry(const std::string& entry) {
  const size_t equals = entry.find('=');
  if (equals == std::string::npos) return {entry, entry};
  return {entry.substr(0, equals), entry.substr(equals + 1)};
}

}  // namespace quantmt::server
