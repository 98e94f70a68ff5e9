// Named models, loaded and unloaded at run time, each version with its own
// scheduler. Replacing a model is atomic: requests go to the old version
// until the new one is ready, and a failed load leaves the old one serving.
//
// Thread-safe. Loads and unloads run one at a time (they are rare and slow);
// lookups never wait for them.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "quantmt/engine/engine.h"
#include "quantmt/engine/mutex.h"
#include "serving/scheduler.h"

namespace quantmt {

struct LoadedModel;

// One loaded version of a model and its scheduler.
struct ModelVersion {
  ModelSpec spec;
  std::shared_ptr<const LoadedModel> model;
  ThreadPlan threads;
  std::unique_ptr<Scheduler> scheduler;
};

class ModelRepository {
 public:
  // Builds a model from a spec: reads spec.model_dir (LoadModelDirectory),
  // or anything else that yields a LoadedModel (tests build models in memory).
  using Loader = std::function<absl::StatusOr<std::shared_ptr<LoadedModel>>(const ModelSpec& spec)>;

  ModelRepository(Loader loader, EngineObserver* observer);
  // Stops every model, letting accepted requests finish.
  ~ModelRepository();

  // See Engine::LoadModel / UnloadModel.
  absl::Status Load(const ModelSpec& spec);
  absl::Status Unload(const std::string& name);
  // The version serving `name`: NotFound, or Unavailable while it is
  // loading, failed to load or is unloading.
  absl::StatusOr<std::shared_ptr<ModelVersion>> Get(const std::string& name) const;
  std::vector<ModelStatus> List() const;
  absl::StatusOr<ModelStatus> Status(const std::string& name) const;
  // Refuses loads and requests; stops every model within `grace`.
  void Shutdown(absl::Duration grace);

 private:
  struct Slot {
    ModelState state = ModelState::kLoading;
    std::shared_ptr<ModelVersion> serving;  // null while none is ready
    std::string last_error;
  };
  ModelStatus StatusOf(const std::string& name, const Slot& slot) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Loader loader_;
  EngineObserver* const observer_;
  Mutex admin_mu_ ABSL_ACQUIRED_BEFORE(mu_);  // serializes Load and Unload
  mutable Mutex mu_;
  std::map<std::string, Slot> slots_ ABSL_GUARDED_BY(mu_);
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

// InvalidArgument naming the first bad field of `spec`.
absl::Status ValidateModelSpec(const ModelSpec& spec);

}  // namespace quantmt
