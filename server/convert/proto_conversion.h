// Engine results and model status to their proto messages.
#pragma once

#include <vector>

#include "quantmt/engine/engine.h"
#include "quantmt/v1/models.pb.h"
#include "quantmt/v1/translation.pb.h"

namespace quantmt::server {

void ToProto(const TranslationResult& result, bool return_scores, v1::Translation* out);
void ToProto(const ModelStatus& status, bool is_default, v1::ModelInfo* out);

}  // namespace quantmt::server
