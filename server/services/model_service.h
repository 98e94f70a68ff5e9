// quantmt.v1.ModelService: list, load and unload models. Loads and unloads
// are admin calls and run on their own thread (a load takes seconds).
#pragma once

#include "quantmt/v1/models.grpc.pb.h"
#include "server/services/serving_state.h"

namespace quantmt::server {

class ModelService final : public v1::ModelService::CallbackService {
 public:
  explicit ModelService(ServingState* state) : state_(state) {}

  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const v1::ListModelsRequest* request,
                                       v1::ListModelsResponse* response) override;
  grpc::ServerUnaryReactor* LoadModel(grpc::CallbackServerContext* context,
                                      const v1::LoadModelRequest* request,
                                      v1::LoadModelResponse* response) override;
  grpc::ServerUnaryReactor* UnloadModel(grpc::CallbackServerContext* context,
                                        const v1::UnloadModelRequest* request,
                                        v1::UnloadModelResponse* response) override;

 private:
  ServingState* state_;
};

// The spec for model `name` in `directory` under the model root, with the
// server's defaults for fields left at 0/empty. InvalidArgument for a name
// or directory that is empty, absolute or leaves the root ("..").
absl::StatusOr<ModelSpec> MakeModelSpec(const ModelDefaults& defaults, const std::string& name,
                                        const std::string& directory, int replicas, int threads,
                                        const std::string& device);

}  // namespace quantmt::server
