// trainer_state.json: the TrainerState to and from JSON.
#include "train/common/trainer_state.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace quantmt::train {

using Json = nlohmann::json;

std::string StateToText(const TrainerState& state) {
  Json history = Json::array();
  for (const ValidationRecord& r : state.history) {
    history.push_back({{"step", r.step},
                       {"epoch", r.epoch},
                       {"train_loss", r.train_loss},
                       {"dev_loss", r.dev_loss},
                       {"dev_nll", r.dev_nll},
                       {"dev_bleu", r.dev_bleu},
                       {"lr", r.lr},
                       {"seconds", r.seconds}});
  }
  const Json json{{"step", state.step},
                  {"epoch", state.epoch},
                  {"batch_in_epoch", state.batch_in_epoch},
                  {"seed", state.seed},
                  {"best_bleu", state.best_bleu},
                  {"best_step", state.best_step},
                  {"bad_validations", state.bad_validations},
                  {"stopped_early", state.stopped_early},
                  {"train_seconds", state.train_seconds},
                  {"loss_scale", state.loss_scale},
                  {"good_steps", state.good_steps},
                  {"history", history}};
  return json.dump(2) + "\n";
}

absl::StatusOr<TrainerState> StateFromText(const std::string& text, const std::string& origin) {
  const Json json = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return absl::DataLossError(absl::StrCat(origin, ": not a JSON object"));
  }
  try {
    TrainerState state;
    state.step = json.at("step").get<int64_t>();
    state.epoch = json.at("epoch").get<int64_t>();
    state.batch_in_epoch = json.at("batch_in_epoch").get<int64_t>();
    state.seed = json.at("seed").get<uint64_t>();
    state.best_bleu = json.at("best_bleu").get<double>();
    state.best_step = json.at("best_step").get<int64_t>();
    state.bad_validations = json.at("bad_validations").get<int>();
    state.stopped_early = json.at("stopped_early").get<bool>();
    state.train_seconds = json.at("train_seconds").get<double>();
    state.loss_scale = json.value("loss_scale", 1.0);
    state.good_steps = json.value("good_steps", int64_t{0});
    for (const Json& r : json.at("history")) {
      state.history.push_back({r.at("step").get<int64_t>(), r.at("epoch").get<double>(),
                               r.at("train_loss").get<double>(), r.at("dev_loss").get<double>(),
                               r.at("dev_nll").get<double>(), r.at("dev_bleu").get<double>(),
                               r.at("lr").get<double>(), r.at("seconds").get<double>()});
    }
    if (state.step < 0 || state.epoch < 1 || state.batch_in_epoch < 0) {
      return absl::DataLossError(absl::StrCat(origin, ": negative step or epoch"));
    }
    return state;
  } catch (const Json::exception& e) {
    return absl::DataLossError(absl::StrCat(origin, ": ", e.what()));
  }
}

}  // namespace quantmt::train
