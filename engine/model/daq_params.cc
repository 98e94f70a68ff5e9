#include "model/daq_params.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace quantmt {
namespace {

using Json = nlohmann::ordered_json;

constexpr int kMaxBlockSize = 256;
constexpr int kMaxBuckets = 128;
constexpr const char* kKnownKeys[] = {
    "block_size",        "buckets",      "centroids",        "bits",   "centroid_dtype", "roles",
    "kmeans_iterations", "source_model", "calibration_data", "recipe", "summary"};
constexpr const char* kCentroidDtypes[] = {"float16", "bfloat16", "float32", "int8"};

absl::Status Error(const std::string& origin, const std::string& key, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(origin, ": quantization.", key, ": ", what));
}

absl::Status GetInt(const Json& json, const std::string& origin, const std::string& key, int min,
                    int max, int* value) {
  auto it = json.find(key);
  if (it == json.end()) return absl::OkStatus();  // keeps the default
  if (!it->is_number_integer()) return Error(origin, key, "expected an integer");
  const int64_t v = it->get<int64_t>();
  if (v < min || v > max) {
    return Error(origin, key,
                 absl::StrCat("expected an integer in [", min, ", ", max, "], got ", v));
  }
  *value = static_cast<int>(v);
  return absl::OkStatus();
}

absl::Status GetString(const Json& json, const std::string& origin, const std::string& key,
                       std::string* value) {
  auto it = json.find(key);
  if (it == json.end()) return absl::OkStatus();
  if (!it->is_string()) return Error(origin, key, "expected a string");
  *value = it->get<std::string>();
  return absl::OkStatus();
}

int* RoleBlock(DaqParams* params, const std::string& role) {
  if (role == "feed_forward") return &params->block_feed_forward;
  if (role == "embedding") return &params->block_embedding;
  if (role == "output_projection") return &params->block_output_projection;
  if (role == "attention") return &params->block_attention;
  return nullptr;
}

std::string RoleList() {
  return absl::StrJoin(std::begin(kDaqRoleNames), std::end(kDaqRoleNames), ", ");
}

}  // namespace

bool DaqParams::Quantizes(const std::string& role) const {
  return std::find(roles.begin(), roles.end(), role) != roles.end();
}

int DaqParams::BlockSize(const std::string& role) const {
  int* block = RoleBlock(const_cast<DaqParams*>(this), role);
  return block == nullptr ? 0 : *block;
}

absl::StatusOr<DaqParams> ParseDaqParams(const std::string& params_json,
                                         const std::string& origin) {
  const Json json = Json::parse(params_json, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": quantization: not a JSON object"));
  }
  for (const auto& item : json.items()) {
    if (std::find_if(std::begin(kKnownKeys), std::end(kKnownKeys),
                     [&](const char* key) { return item.key() == key; }) == std::end(kKnownKeys)) {
      return Error(
          origin, item.key(),
          absl::StrCat("unknown key for scheme daq (known: ",
                       absl::StrJoin(std::begin(kKnownKeys), std::end(kKnownKeys), ", "), ")"));
    }
  }
  DaqParams params;
  if (auto it = json.find("block_size"); it != json.end()) {
    if (!it->is_object()) return Error(origin, "block_size", "expected an object of role: size");
    for (const auto& item : it->items()) {
      int* block = RoleBlock(&params, item.key());
      if (block == nullptr) {
        return Error(origin, "block_size." + item.key(),
                     absl::StrCat("unknown role (known: ", RoleList(), ")"));
      }
      RETURN_IF_ERROR(GetInt(*it, origin, item.key(), 1, kMaxBlockSize, block));
    }
  }
  RETURN_IF_ERROR(GetInt(json, origin, "buckets", 1, kMaxBuckets, &params.buckets));
  RETURN_IF_ERROR(GetInt(json, origin, "bits", 4, 8, &params.bits));
  if (params.bits != 4 && params.bits != 8) {
    return Error(origin, "bits", absl::StrCat("expected 4 or 8, got ", params.bits));
  }
  const int max_centroids = 1 << params.bits;
  params.centroids = max_centroids;
  RETURN_IF_ERROR(GetInt(json, origin, "centroids", 2, max_centroids, &params.centroids));
  RETURN_IF_ERROR(GetString(json, origin, "centroid_dtype", &params.centroid_dtype));
  if (std::find(std::begin(kCentroidDtypes), std::end(kCentroidDtypes), params.centroid_dtype) ==
      std::end(kCentroidDtypes)) {
    return Error(origin, "centroid_dtype",
                 absl::StrCat("'", params.centroid_dtype, "' is not supported (known: ",
                              absl::StrJoin(kCentroidDtypes, ", "), ")"));
  }
  if (auto it = json.find("roles"); it != json.end()) {
    if (!it->is_array()) return Error(origin, "roles", "expected a list of role names");
    params.roles.clear();
    std::set<std::string> seen;
    for (const Json& role : *it) {
      if (!role.is_string() || RoleBlock(&params, role.get<std::string>()) == nullptr) {
        return Error(origin, "roles", absl::StrCat("expected role names (", RoleList(), ")"));
      }
      if (!seen.insert(role.get<std::string>()).second) {
        return Error(origin, "roles", absl::StrCat("'", role.get<std::string>(), "' twice"));
      }
      params.roles.push_back(role.get<std::string>());
    }
  }
  RETURN_IF_ERROR(GetInt(json, origin, "kmeans_iterations", 0, 1 << 20, &params.kmeans_iterations));
  RETURN_IF_ERROR(GetString(json, origin, "source_model", &params.source_model));
  RETURN_IF_ERROR(GetString(json, origin, "calibration_data", &params.calibration_data));
  if (auto it = json.find("recipe"); it != json.end()) params.recipe_json = it->dump();
  if (auto it = json.find("summary"); it != json.end()) params.summary_json = it->dump();
  return params;
}

std::string DaqParamsToJson(const DaqParams& params) {
  Json json = Json::object();
  json["block_size"] = {{"feed_forward", params.block_feed_forward},
                        {"embedding", params.block_embedding},
                        {"output_projection", params.block_output_projection},
                        {"attention", params.block_attention}};
  json["buckets"] = params.buckets;
  json["centroids"] = params.centroids;
  json["bits"] = params.bits;
  json["centroid_dtype"] = params.centroid_dtype;
  json["roles"] = params.roles;
  json["kmeans_iterations"] = params.kmeans_iterations;
  json["source_model"] = params.source_model;
  json["calibration_data"] = params.calibration_data;
  json["recipe"] = Json::parse(params.recipe_json, nullptr, false);
  json["summary"] = Json::parse(params.summary_json, nullptr, false);
  return json.dump();
}

}  // namespace quantmt
