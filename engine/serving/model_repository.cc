#include "serving/model_repository.h"

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "serving/loaded_model.h"
#include "serving/quote_input.h"

namespace quantmt {

absl::Status ValidateModelSpec(const ModelSpec& spec) {
  if (spec.name.empty()) return absl::InvalidArgumentError("model name must not be empty");
  if (spec.replicas < 0 || spec.replicas > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("replicas must be in 0..1024 (0: automatic), got ", spec.replicas));
  }
  if (spec.runtime.num_threads < 0 || spec.runtime.num_threads > 1024) {
    return absl::InvalidArgumentError(absl::StrCat(
        "runtime.num_threads must be in 0..1024 (0: automatic), got ", spec.runtime.num_threads));
  }
  return ValidateSchedulerOptions(spec.scheduler);
}

ModelRepository::ModelRepository(Loader loader, EngineObserver* observer)
    : loader_(std::move(loader)), observer_(observer) {}

ModelRepository::~ModelRepository() { Shutdown(absl::InfiniteDuration()); }

absl::Status ModelRepository::Load(const ModelSpec& spec) {
  RETURN_IF_ERROR(ValidateModelSpec(spec));
  MutexLock admin(&admin_mu_);
  {
    MutexLock lock(&mu_);
    if (shut_down_) return absl::UnavailableError("the engine is shutting down");
    slots_.try_emplace(spec.name);  // a new name shows as loading
  }
  absl::StatusOr<std::shared_ptr<LoadedModel>> loaded;
  try {
    loaded = loader_(spec);
  } catch (const std::exception& e) {
    loaded = absl::InternalError(absl::StrCat("loading failed: ", e.what()));
  }
  if (!loaded.ok()) {
    MutexLock lock(&mu_);
    Slot& slot = slots_[spec.name];
    slot.last_error = std::string(loaded.status().message());
    if (slot.serving == nullptr) slot.state = ModelState::kFailed;
    return loaded.status();
  }
  auto version = std::make_shared<ModelVersion>();
  version->spec = spec;
  version->model = *loaded;
  version->threads = (*loaded)->device.is_cpu()
                         ? PlanCpuThreads(static_cast<int>(std::thread::hardware_concurrency()),
                                          spec.replicas, spec.runtime.num_threads)
                         : ThreadPlan{std::max(1, spec.replicas), 1};
  version->scheduler = std::make_unique<Scheduler>(spec.name, version->model, spec.scheduler,
                                                   version->threads, observer_);
  std::shared_ptr<ModelVersion> old;
  {
    MutexLock lock(&mu_);
    if (shut_down_) {
      old = std::move(version);  // stopped below, never served
    }
  }
  if (old != nullptr) {
    old->scheduler->Stop(absl::ZeroDuration());
    return absl::UnavailableError("the engine is shutting down");
  }
  {
    MutexLock lock(&mu_);
    Slot& slot = slots_[spec.name];
    old = std::move(slot.serving);
    slot.serving = version;
    slot.state = ModelState::kReady;
    slot.last_error.clear();
  }
  // Requests the old version accepted finish on it; new ones reach the new
  // version (Engine::Translate retries a submission that raced the swap).
  if (old != nullptr) old->scheduler->Stop(absl::InfiniteDuration());
  return absl::OkStatus();
}

absl::Status ModelRepository::Unload(const std::string& name) {
  MutexLock admin(&admin_mu_);
  std::shared_ptr<ModelVersion> version;
  {
    MutexLock lock(&mu_);
    auto it = slots_.find(name);
    if (it == slots_.end())
      return absl::NotFoundError(absl::StrCat("no model named ", QuoteInput(name)));
    version = std::move(it->second.serving);
    it->second.state = ModelState::kUnloading;
  }
  if (version != nullptr) version->scheduler->Stop(absl::InfiniteDuration());
  MutexLock lock(&mu_);
  slots_.erase(name);
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<ModelVersion>> ModelRepository::Get(const std::string& name) const {
  MutexLock lock(&mu_);
  if (shut_down_) return absl::UnavailableError("the engine is shutting down");
  auto it = slots_.find(name);
  if (it == slots_.end())
    return absl::NotFoundError(absl::StrCat("no model named ", QuoteInput(name)));
  if (it->second.serving == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("model '", name, "' is ", ModelStateName(it->second.state),
                     it->second.last_error.empty() ? "" : ": ", it->second.last_error));
  }
  return it->second.serving;
}

ModelStatus ModelRepository::StatusOf(const std::string& name, const Slot& slot) const {
  ModelStatus status;
  status.name = name;
  status.state = slot.state;
  status.last_error = slot.last_error;
  if (const ModelVersion* version = slot.serving.get()) {
    status.info = version->model->info;
    status.replicas = version->threads.replicas;
    status.threads_per_replica = version->threads.threads_per_replica;
    status.weights_bytes = version->model->weights_bytes;
    status.cache_bytes = version->scheduler->cache_bytes();
    status.queued_sentences = version->scheduler->queued_sentences();
    status.running_sentences = version->scheduler->running_sentences();
  }
  return status;
}

std::vector<ModelStatus> ModelRepository::List() const {
  MutexLock lock(&mu_);
  std::vector<ModelStatus> list;
  for (const auto& [name, slot] : slots_) list.push_back(StatusOf(name, slot));
  return list;
}

absl::StatusOr<ModelStatus> ModelRepository::Status(const std::string& name) const {
  MutexLock lock(&mu_);
  auto it = slots_.find(name);
  if (it == slots_.end())
    return absl::NotFoundError(absl::StrCat("no model named ", QuoteInput(name)));
  return StatusOf(name, it->second);
}

void ModelRepository::Shutdown(absl::Duration grace) {
  const absl::Time deadline = absl::Now() + grace;
  std::vector<std::shared_ptr<ModelVersion>> versions;
  {
    MutexLock lock(&mu_);
    shut_down_ = true;
    for (auto& [name, slot] : slots_) {
      if (slot.serving != nullptr) versions.push_back(slot.serving);
      slot.state = ModelState::kUnloading;
    }
  }
  // Admission stops everywhere first, then each model gets what is left of
  // the grace period.
  for (auto& version : versions) version->scheduler->StopAccepting();
  for (auto& version : versions) {
    version->scheduler->Stop(std::max(absl::ZeroDuration(), deadline - absl::Now()));
  }
}

}  // namespace quantmt
