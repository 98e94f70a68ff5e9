// quantmt models list | load NAME | unload NAME.
#include <iostream>

#include "client/cli/commands.h"
#include "quantmt/v1/models.grpc.pb.h"

namespace quantmt::client {
namespace {

struct ModelsFlags {
  std::string name, directory, device;
  int replicas = 0, threads = 0;
};

int Report(const grpc::Status& status) {
  if (status.ok()) return 0;
  std::cerr << "quantmt models: " << Describe(status) << "\n";
  return 1;
}

void PrintModel(const v1::ModelInfo& model) {
  std::printf("%-20s %-9s %-6s %-8s %-5s->%-5s %12lld %9.1f %8d %s%s\n", model.name().c_str(),
              model.state().c_str(), model.precision().c_str(), model.device().c_str(),
              model.source_language().c_str(), model.target_language().c_str(),
              static_cast<long long>(model.parameters()), model.weights_bytes() / 1e6,
              model.replicas(), model.model_dir().c_str(), model.is_default() ? "  (default)" : "");
}

int List(const ConnectionOptions& connection) {
  auto stub = Connect<v1::ModelService>(connection, "models");
  if (!stub) return 1;
  grpc::ClientContext context;
  PrepareContext(connection, false, &context);
  v1::ListModelsResponse response;
  if (int code = Report(stub->ListModels(&context, {}, &response))) return code;
  std::printf("%-20s %-9s %-6s %-8s %-12s %12s %9s %8s %s\n", "name", "state", "prec", "device",
              "languages", "parameters", "MB", "replicas", "directory");
  for (const v1::ModelInfo& model : response.models()) PrintModel(model);
  return 0;
}

int Load(const ConnectionOptions& connection, const ModelsFlags& flags) {
  auto stub = Connect<v1::ModelService>(connection, "models");
  if (!stub) return 1;
  grpc::ClientContext context;
  PrepareContext(connection, true, &context);
  v1::LoadModelRequest request;
  request.set_name(flags.name);
  request.set_directory(flags.directory);
  request.set_replicas(flags.replicas);
  request.set_threads(flags.threads);
  request.set_device(flags.device);
  v1::LoadModelResponse response;
  if (int code = Report(stub->LoadModel(&context, request, &response))) return code;
  PrintModel(response.model());
  return 0;
}

int Unload(const ConnectionOptions& connection, const ModelsFlags& flags) {
  auto stub = Connect<v1::ModelService>(connection, "models");
  if (!stub) return 1;
  grpc::ClientContext context;
  PrepareContext(connection, true, &context);
  v1::UnloadModelRequest request;
  request.set_name(flags.name);
  v1::UnloadModelResponse response;
  if (int code = Report(stub->UnloadModel(&context, request, &response))) return code;
  std::printf("unloaded %s\n", flags.name.c_str());
  return 0;
}

}  // namespace

void AddModelsCommand(CLI::App& app, const ConnectionOptions& connection, int* exit_code) {
  auto flags = std::make_shared<ModelsFlags>();
  CLI::App* command = app.add_subcommand("models", "List, load and unload models");
  command->require_subcommand(1);
  command->add_subcommand("list", "Models on the server")->callback([&connection, exit_code] {
    *exit_code = List(connection);
  });
  CLI::App* load = command->add_subcommand("load", "Load a model (admin: --token)");
  load->add_option("name", flags->name, "Name requests will use")->required();
  load->add_option("--dir", flags->directory,
                   "Directory under the server's model root (default: NAME)");
  load->add_option("--replicas", flags->replicas, "0: the server default");
  load->add_option("--threads", flags->threads, "0: the server default");
  load->add_option("--device", flags->device, "cpu or cuda (default: the server's)");
  load->callback([&connection, flags, exit_code] { *exit_code = Load(connection, *flags); });
  CLI::App* unload = command->add_subcommand("unload", "Unload a model (admin: --token)");
  unload->add_option("name", flags->name)->required();
  unload->callback([&connection, flags, exit_code] { *exit_code = Unload(connection, *flags); });
}

}  // namespace quantmt::client
