#include "server/convert/proto_conversion.h"

namespace quantmt::server {

void ToProto(const TranslationResult& result, bool return_scores, v1::Translation* out) {
  out->set_source_tokens(result.source_tokens);
  if (!result.hypotheses.empty()) {
    out->set_generated_tokens(static_cast<int>(result.hypotheses[0].token_ids.size()));
  }
  for (const Hypothesis& hypothesis : result.hypotheses) {
    v1::Hypothesis* proto = out->add_hypotheses();
    proto->set_text(hypothesis.text);
    if (return_scores) {
      proto->set_score(hypothesis.score);
      proto->set_log_prob(hypothesis.log_prob);
    }
  }
}

void ToProto(const ModelStatus& status, bool is_default, v1::ModelInfo* out) {
  out->set_name(status.name);
  out->set_state(ModelStateName(status.state));
  out->set_model_dir(status.info.model_dir);
  out->set_source_language(status.info.source_language);
  out->set_target_language(status.info.target_language);
  out->set_precision(status.info.quantization);
  out->set_compute_type(status.info.compute_type);
  out->set_device(status.info.device);
  out->set_parameters(status.info.num_parameters);
  out->set_weights_bytes(status.weights_bytes);
  out->set_replicas(status.replicas);
  out->set_queued_sentences(status.queued_sentences);
  out->set_running_sentences(status.running_sentences);
  out->set_last_error(status.last_error);
  out->set_is_default(is_default);
}

}  // namespace quantmt::server
