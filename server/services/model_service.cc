#include "server/services/model_service.h"

#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "server/admission/admin_auth.h"
#include "server/admission/request_validation.h"
#include "server/convert/proto_conversion.h"
#include "server/convert/status_conversion.h"

namespace quantmt::server {

absl::StatusOr<ModelSpec> MakeModelSpec(const ModelDefaults& defaults, const std::string& name,
                                        const std::string& directory, int replicas, int threads,
                                        const std::string& device) {
  if (name.empty() || name.size() > 128) {
    return absl::InvalidArgumentError("a model needs a name of 1 to 128 characters");
  }
  const std::filesystem::path relative(directory.empty() ? name : directory);
  if (relative.is_absolute()) {
    return absl::InvalidArgumentError(absl::StrCat("model directory \"", relative.string(),
                                                   "\" must be relative to the model root"));
  }
  for (const auto& part : relative) {
    if (part == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat("model directory \"", relative.string(),
                       "\" must stay inside the model root (no \"..\")"));
    }
  }
  if (replicas < 0 || replicas > 64 || threads < 0 || threads > 1024) {
    return absl::InvalidArgumentError("replicas must be 0 (default) to 64, threads 0 to 1024");
  }
  ModelSpec spec;
  spec.name = name;
  spec.model_dir = (std::filesystem::path(defaults.model_root) / relative).string();
  spec.runtime = defaults.runtime;
  if (threads > 0) spec.runtime.num_threads = threads;
  if (device == "cpu") {
    spec.runtime.device = DeviceKind::kCpu;
  } else if (device == "cuda") {
    spec.runtime.device = DeviceKind::kCuda;
  } else if (!device.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("device \"", device, "\" is unknown: use cpu or cuda"));
  }
  spec.replicas = replicas > 0 ? replicas : defaults.replicas;
  spec.scheduler = defaults.scheduler;
  return spec;
}

grpc::ServerUnaryReactor* ModelService::ListModels(grpc::CallbackServerContext* context,
                                                   const v1::ListModelsRequest* request,
                                                   v1::ListModelsResponse* response) {
  const absl::Time start = absl::Now();
  const grpc::Status status =
      ToGrpcStatus(ValidateMessageSize(request->ByteSizeLong(), state_->limits()));
  if (status.ok()) {
    const std::string default_model = state_->default_model();
    for (const ModelStatus& model : state_->engine().ListModels()) {
      ToProto(model, model.name == default_model, response->add_models());
    }
  }
  state_->Record("ListModels", "", status, start);
  auto* reactor = context->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

grpc::ServerUnaryReactor* ModelService::LoadModel(grpc::CallbackServerContext* context,
                                                  const v1::LoadModelRequest* request,
                                                  v1::LoadModelResponse* response) {
  const absl::Time start = absl::Now();
  auto* reactor = context->DefaultReactor();
  auto refuse = [&](const grpc::Status& status) {
    state_->Record("LoadModel", request->name(), status, start);
    reactor->Finish(status);
    return reactor;
  };
  if (auto size = ValidateMessageSize(request->ByteSizeLong(), state_->limits()); !size.ok()) {
    return refuse(ToGrpcStatus(size));
  }
  if (grpc::Status accepting = state_->CheckAccepting(); !accepting.ok()) return refuse(accepting);
  if (auto auth = CheckAdmin(*context, state_->admin_token()); !auth.ok()) {
    return refuse(ToGrpcStatus(auth));
  }
  auto spec = MakeModelSpec(state_->model_defaults(), request->name(), request->directory(),
                            request->replicas(), request->threads(), request->device());
  if (!spec.ok()) return refuse(ToGrpcStatus(spec.status()));
  // Loading reads and checks the whole checkpoint: keep it off gRPC's threads.
  std::thread([state = state_, reactor, response, spec = *std::move(spec), start] {
    absl::Status loaded = state->engine().LoadModel(spec);
    if (loaded.ok()) {
      state->ModelLoaded(spec.name);
      auto status = state->engine().GetModel(spec.name);
      if (status.ok()) {
        ToProto(*status, state->default_model() == spec.name, response->mutable_model());
      }
    }
    const grpc::Status status = ToGrpcStatus(loaded);
    state->Record("LoadModel", spec.name, status, start);
    reactor->Finish(status);
  }).detach();
  return reactor;
}

grpc::ServerUnaryReactor* ModelService::UnloadModel(grpc::CallbackServerContext* context,
                                                    const v1::UnloadModelRequest* request,
                                                    v1::UnloadModelResponse* response) {
  const absl::Time start = absl::Now();
  auto* reactor = context->DefaultReactor();
  grpc::Status status =
      ToGrpcStatus(ValidateMessageSize(request->ByteSizeLong(), state_->limits()));
  if (status.ok()) status = state_->CheckAccepting();
  if (status.ok()) status = ToGrpcStatus(CheckAdmin(*context, state_->admin_token()));
  if (!status.ok()) {
    state_->Record("UnloadModel", request->name(), status, start);
    reactor->Finish(status);
    return reactor;
  }
  // Unloading waits for the model's accepted requests: off gRPC's threads.
  std::thread([state = state_, reactor, name = request->name(), start] {
    // Recorded under the name while it is still a served model.
    absl::Status unloaded = state->engine().UnloadModel(name);
    const grpc::Status status = ToGrpcStatus(unloaded);
    state->Record("UnloadModel", name, status, start);
    if (unloaded.ok()) state->ModelUnloaded(name);
    reactor->Finish(status);
  }).detach();
  return reactor;
}

}  // namespace quantmt::server
