// Engine construction with a chosen model loader (tests build models in
// memory instead of reading model directories).
#pragma once

#include <memory>

#include "quantmt/engine/engine.h"
#include "serving/model_repository.h"

namespace quantmt {

std::unique_ptr<Engine> CreateEngine(const EngineOptions& options, ModelRepository::Loader loader);

}  // namespace quantmt
