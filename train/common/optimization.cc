// The loss, the learning-rate schedule, Adam, and one update step with
// mixed precision, fp16 loss scaling and gradient clipping.
#include "train/common/optimization.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "train/common/trainer_impl.h"

namespace quantmt::train {

LossSums LabelSmoothedCrossEntropy(const torch::Tensor& logits, const torch::Tensor& target,
                                   int64_t pad_id, double epsilon) {
  const auto log_probs = torch::log_softmax(logits.to(torch::kFloat), -1);
  const auto nll = -log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1);
  const auto smooth = -log_probs.mean(-1);
  const auto mask = target.ne(pad_id);
  LossSums sums;
  sums.nll = nll.masked_select(mask).sum();
  sums.loss = ((1.0 - epsilon) * nll + epsilon * smooth).masked_select(mask).sum();
  sums.tokens = mask.sum().item<int64_t>();
  return sums;
}

double InverseSqrtLearningRate(double peak, int64_t warmup, int64_t step) {
  const double s = static_cast<double>(std::max<int64_t>(step, 1));
  if (warmup <= 0) return peak / std::sqrt(s);
  const double w = static_cast<double>(warmup);
  return peak * std::min(s / w, std::sqrt(w / s));
}

absl::Status Trainer::Impl::CreateOptimizer() {
  parameters = model->parameters();
  optimizer = std::make_unique<torch::optim::Adam>(
      parameters, torch::optim::AdamOptions(options.lr).betas({0.9, 0.98}).eps(1e-9));
  return absl::OkStatus();
}

bool Trainer::Impl::Step(const Batch& cpu_batch, double lr, double* loss_sum, double* nll_sum,
                         double* grad_norm) {
  const Batch batch = cpu_batch.To(device);
  optimizer->zero_grad();
  LossSums sums;
  {
    AutocastScope autocast(options.amp != AmpMode::kNone,
                           options.amp == AmpMode::kFloat16 ? torch::kFloat16 : torch::kBFloat16);
    const auto logits = model->Forward(batch.source, batch.target_in);
    sums = LabelSmoothedCrossEntropy(logits, batch.target_out, ids.pad, options.label_smoothing);
  }
  // Mean over target tokens: the gradient scale does not depend on the batch.
  const auto loss = sums.loss / static_cast<double>(std::max<int64_t>(1, sums.tokens));
  (loss * state.loss_scale).backward();
  if (state.loss_scale != 1.0) {
    torch::NoGradGuard no_grad;
    for (auto& p : parameters) {
      if (p.grad().defined()) p.grad().mul_(1.0 / state.loss_scale);
    }
  }
  const double max_norm =
      options.clip_norm > 0 ? options.clip_norm : std::numeric_limits<double>::infinity();
  *grad_norm = torch::nn::utils::clip_grad_norm_(parameters, max_norm);
  if (!std::isfinite(*grad_norm)) {
    optimizer->zero_grad();
    if (options.amp == AmpMode::kFloat16) {
      state.loss_scale = std::max(1.0, state.loss_scale / 2);
      state.good_steps = 0;
    }
    return false;
  }
  for (auto& group : optimizer->param_groups()) {
    static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
  }
  optimizer->step();
  if (options.amp == AmpMode::kFloat16 && ++state.good_steps % kLossScaleGrowthInterval == 0) {
    state.loss_scale *= 2;
  }
  *loss_sum = sums.loss.item<double>();
  *nll_sum = sums.nll.item<double>();
  return true;
}

}  // namespace quantmt::train
