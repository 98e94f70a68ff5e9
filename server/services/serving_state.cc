#include "server/services/serving_state.h"

#include <algorithm>

#include "server/convert/status_conversion.h"

namespace quantmt::server {

std::string ServingState::default_model() const {
  MutexLock lock(&mutex_);
  return loaded_.empty() ? "" : loaded_.front();
}

void ServingState::ModelLoaded(const std::string& name) {
  {
    MutexLock lock(&mutex_);
    if (std::find(loaded_.begin(), loaded_.end(), name) == loaded_.end()) loaded_.push_back(name);
  }
  if (health_ != nullptr && !draining()) health_->SetServingStatus(name, true);
}

void ServingState::ModelUnloaded(const std::string& name) {
  {
    MutexLock lock(&mutex_);
    loaded_.erase(std::remove(loaded_.begin(), loaded_.end(), name), loaded_.end());
  }
  if (health_ != nullptr) health_->SetServingStatus(name, false);
}

void ServingState::SetReady() {
  ready_.store(true);
  if (health_ != nullptr && !draining()) health_->SetServingStatus(true);
}

void ServingState::StartDraining() {
  draining_.store(true);
  // Every service, the overall one ("") included, now answers NOT_SERVING
  // and later updates are ignored.
  if (health_ != nullptr) health_->Shutdown();
}

grpc::Status ServingState::CheckAccepting() const {
  if (!ready_.load()) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "the server is starting (loading its models): retry shortly");
  }
  if (!draining()) return grpc::Status::OK;
  return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      "the server is shutting down: retry on another instance");
}

std::string ServingState::MetricLabel(const std::string& model) const {
  if (model.empty()) return "";
  MutexLock lock(&mutex_);
  return std::find(loaded_.begin(), loaded_.end(), model) != loaded_.end() ? model : "unknown";
}

void ServingState::Record(const char* rpc, const std::string& model, const grpc::Status& status,
                          absl::Time start) const {
  metrics_->RecordRequest(rpc, MetricLabel(model), GrpcCodeName(status.error_code()),
                          absl::ToDoubleSeconds(absl::Now() - start));
}

bool ServingState::TryStartJob() {
  if (running_jobs_.fetch_add(1) < kMaxJobs) return true;
  running_jobs_.fetch_sub(1);
  return false;
}

void ServingState::JobDone() { running_jobs_.fetch_sub(1); }

}  // namespace quantmt::server
