// DAQ layers in the engine: code packing, int8 centroids, the lookup-table
// kernel against decompress-then-matmul, and the loader's refusals.
#include "model/daq_linear.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>

#include "checkpoint/safetensors.h"
#include "kernels/dnnl_matmul.h"
#include "model/daq_kernels.h"
#include "model/daq_params.h"
#include "model/model_io.h"
#include "tiny_model.h"

namespace quantmt {
namespace {

namespace fs = std::filesystem;

DaqLayout Layout(int64_t in, int64_t out, int64_t block, int64_t buckets, int bits,
                 int64_t centroids, bool int8 = false) {
  DaqLayout layout;
  layout.in_features = in;
  layout.out_features = out;
  layout.block = block;
  layout.buckets = buckets;
  layout.bits = bits;
  layout.centroids = centroids;
  layout.int8_centroids = int8;
  return layout;
}

// A layer with random codes; `integers` makes every centroid a small integer
// so that all float sums are exact.
std::shared_ptr<DaqLinear> RandomLayer(const DaqLayout& layout, bool integers, uint64_t seed) {
  torch::manual_seed(seed);
  auto layer = std::make_shared<DaqLinear>(layout, /*with_bias=*/true);
  auto centroids = integers
                       ? torch::randint(-8, 9, {layout.buckets, layout.centroids, layout.block})
                             .to(torch::kFloat32)
                       : torch::randn({layout.buckets, layout.centroids, layout.block});
  auto codes = torch::randint(0, layout.centroids, {layout.out_features, layout.blocks_per_row()})
                   .to(torch::kUInt8);
  // Uneven buckets: the layout is data, not a formula.
  auto offsets = daq::EvenBucketOffsets(layout.out_features, layout.buckets);
  if (layout.buckets > 1) offsets[1] = offsets[1].item<int32_t>() - 1;
  layer->SetCodes(centroids, codes, offsets, torch::kFloat32);
  torch::NoGradGuard no_grad;
  layer->named_parameters()["bias"].copy_(
      integers ? torch::randint(-3, 4, {layout.out_features}).to(torch::kFloat32)
               : torch::randn({layout.out_features}));
  return layer;
}

torch::Tensor RunWith(DaqLinear& layer, DaqKernel kernel, const torch::Tensor& input) {
  torch::NoGradGuard no_grad;
  layer.set_kernel(kernel);
  return layer.Forward(input);
}

TEST(DaqCodesTest, NibblePackingRoundTrips) {
  for (int64_t n : {1, 6, 9}) {
    auto codes = torch::randint(0, 16, {5, n}).to(torch::kUInt8);
    auto packed = daq::PackNibbles(codes);
    ASSERT_EQ(packed.size(1), (n + 1) / 2);
    EXPECT_TRUE(daq::UnpackNibbles(packed, n).equal(codes)) << "n = " << n;
    // Block 0 sits in the low nibble of byte 0, block 1 in its high nibble.
    EXPECT_EQ(packed[0][0].item<int>(),
              codes[0][0].item<int>() | (n > 1 ? codes[0][1].item<int>() << 4 : 0));
  }
}

TEST(DaqCodesTest, Int8CentroidsStayWithinHalfAScale) {
  torch::manual_seed(3);
  auto centroids = torch::randn({3, 16, 4}) * torch::tensor({0.01f, 1.0f, 50.0f}).view({3, 1, 1});
  centroids[1].zero_();  // an all-zero bucket keeps scale 1
  for (auto scale_type : {torch::kFloat32, torch::kFloat16}) {
    daq::Int8Centroids q = daq::QuantizeCentroidsInt8(centroids, scale_type);
    ASSERT_EQ(q.values.scalar_type(), torch::kInt8);
    ASSERT_EQ(q.scales.scalar_type(), scale_type);
    auto scales = q.scales.to(torch::kFloat32);
    auto restored = daq::DequantizeCentroids(q.values, scales);
    auto error = (restored - centroids).abs().amax({1, 2});
    for (int b = 0; b < 3; ++b) {
      EXPECT_GT(scales[b].item<float>(), 0.0f);
      // Rounding to the nearest step: at most half a step (+ float slack).
      EXPECT_LE(error[b].item<float>(), 0.5f * scales[b].item<float>() * 1.0001f) << b;
    }
  }
}

// With integer centroids and inputs every product and sum is exact in
// float32, so both paths must agree bit for bit whatever their order.
TEST(DaqKernelTest, LookupEqualsDecompressExactly) {
  for (const DaqLayout& layout :
       {Layout(64, 300, 8, 1, 8, 256), Layout(64, 300, 8, 3, 8, 200), Layout(72, 40, 8, 2, 4, 16),
        Layout(36, 33, 4, 4, 4, 11), Layout(64, 50, 8, 2, 8, 256, /*int8=*/true)}) {
    auto layer = RandomLayer(layout, /*integers=*/!layout.int8_centroids, 11);
    for (int64_t rows : {1, 7}) {
      auto input = torch::randint(-4, 5, {rows, layout.in_features}).to(torch::kFloat32);
      if (layout.int8_centroids) input = torch::randn({rows, layout.in_features});
      auto lookup = RunWith(*layer, DaqKernel::kLookup, input);
      auto dense = RunWith(*layer, DaqKernel::kDecompress, input);
      if (layout.int8_centroids) {
        // Real-valued: equal up to float32 summation order (see next test).
        EXPECT_TRUE(torch::allclose(lookup, dense, 1e-4, 1e-4));
      } else {
        EXPECT_TRUE(lookup.equal(dense))
            << "in " << layout.in_features << " out " << layout.out_features << " rows " << rows;
      }
    }
  }
}

// Real-valued inputs: both paths are within the float32 summation error
// bound n * eps * sum|x_i w_i| of the float64 product (Higham, Accuracy and
// Stability of Numerical Algorithms, 3.1): they only add in another order.
TEST(DaqKernelTest, LookupMatchesFloat64WithinSummationBound) {
  const DaqLayout layout = Layout(384, 600, 8, 2, 8, 256);
  auto layer = RandomLayer(layout, /*integers=*/false, 5);
  auto input = torch::randn({9, layout.in_features});
  auto weight = daq::DecodeRows(layer->FloatCentroids(), layer->UnpackedCodes(),
                                daq::RowBuckets(layer->named_buffers()["bucket_offsets"], 600))
                    .to(torch::kFloat64);
  auto bias = layer->bias().detach().to(torch::kFloat64);
  auto reference = torch::addmm(bias, input.to(torch::kFloat64), weight.t());
  auto magnitude = torch::addmm(bias.abs(), input.abs().to(torch::kFloat64), weight.abs().t());
  const double bound = (layout.in_features + 1) * std::numeric_limits<float>::epsilon();
  for (DaqKernel kernel : {DaqKernel::kLookup, DaqKernel::kDecompress}) {
    auto output = RunWith(*layer, kernel, input).to(torch::kFloat64);
    EXPECT_TRUE(((output - reference).abs() <= magnitude * bound).all().item<bool>());
  }
  // The served decompress path: the prepacked oneDNN product.
  layer->PrepareForInference();
  EXPECT_EQ(layer->prepacked(), kernels::HaveDnnl());
  torch::NoGradGuard no_grad;
  auto served = layer->Forward(input).to(torch::kFloat64);
  EXPECT_TRUE(((served - reference).abs() <= magnitude * bound).all().item<bool>());
}

// Serving decompresses at load and runs the decoded weight through the
// prepacked oneDNN product that FloatLinear uses. With integer centroids and
// inputs every sum is exact, so it must equal decompress-then-matmul (and so
// the lookup kernel) bit for bit, at every row count and input rank.
TEST(DaqKernelTest, PreparedDecompressEqualsDecodeThenMatmul) {
  for (const DaqLayout& layout :
       {Layout(64, 300, 8, 3, 8, 200), Layout(72, 40, 8, 2, 4, 16), Layout(36, 33, 4, 4, 4, 11),
        Layout(64, 50, 8, 2, 8, 256, /*int8=*/true)}) {
    auto layer = RandomLayer(layout, /*integers=*/true, 13);
    torch::NoGradGuard no_grad;
    auto weight = daq::DecodeRows(
        layer->FloatCentroids(), layer->UnpackedCodes(),
        daq::RowBuckets(layer->named_buffers()["bucket_offsets"], layout.out_features));
    layer->set_kernel(DaqKernel::kDecompress);
    layer->PrepareForInference();
    ASSERT_EQ(layer->prepacked(), kernels::HaveDnnl());
    for (int64_t rows : {1, 7, 64}) {
      auto input = torch::randint(-4, 5, {rows, layout.in_features}).to(torch::kFloat32);
      auto expected = torch::addmm(layer->bias(), input, weight.t());
      if (layout.int8_centroids) {
        // Dequantized centroids are not integers: equal up to summation order.
        EXPECT_TRUE(torch::allclose(layer->Forward(input), expected, 1e-4, 1e-4));
      } else {
        EXPECT_TRUE(layer->Forward(input).equal(expected))
            << "in " << layout.in_features << " out " << layout.out_features << " rows " << rows;
      }
    }
    auto batch = torch::randint(-4, 5, {2, 3, layout.in_features}).to(torch::kFloat32);
    auto output = layer->Forward(batch);
    ASSERT_EQ(output.sizes(), (std::vector<int64_t>{2, 3, layout.out_features}));
    EXPECT_TRUE(output.reshape({6, -1}).equal(layer->Forward(batch.reshape({6, -1}))));
  }
}

// Inputs the packed product does not take (autograd on) still get the right
// answer after the plain decoded weight was dropped: it is decoded again.
TEST(DaqKernelTest, PreparedLayerServesInputsOutsideThePackedProduct) {
  auto layer = RandomLayer(Layout(32, 20, 8, 2, 8, 16), /*integers=*/false, 6);
  layer->set_kernel(DaqKernel::kDecompress);
  layer->PrepareForInference();
  auto input = torch::randn({3, 32});
  auto packed = [&] {
    torch::NoGradGuard no_grad;
    return layer->Forward(input);
  }();
  ASSERT_TRUE(torch::GradMode::is_enabled());
  EXPECT_TRUE(torch::allclose(layer->Forward(input).detach(), packed, 1e-5, 1e-5));
}

TEST(DaqKernelTest, EmbedRowsDecodesOnlyTheRowsAsked) {
  for (int bits : {8, 4}) {
    const DaqLayout layout = Layout(32, 50, 8, 3, bits, bits == 8 ? 256 : 16);
    auto layer = RandomLayer(layout, false, 2);
    auto ids = torch::tensor({{0, 49, 17}, {3, 3, 20}}, torch::kLong);
    auto rows = layer->EmbedRows(ids);
    auto weight = daq::DecodeRows(layer->FloatCentroids(), layer->UnpackedCodes(),
                                  daq::RowBuckets(layer->named_buffers()["bucket_offsets"], 50));
    EXPECT_TRUE(rows.equal(torch::embedding(weight, ids)));
    // A prepared layer (decoded weight packed, plain copy dropped) too.
    layer->set_kernel(DaqKernel::kDecompress);
    layer->PrepareForInference();
    EXPECT_TRUE(layer->EmbedRows(ids).equal(torch::embedding(weight, ids)));
  }
}

TEST(DaqKernelTest, ResidentBytesShowTheDecompressedWeight) {
  const DaqLayout layout = Layout(64, 512, 8, 1, 8, 256);
  auto layer = RandomLayer(layout, false, 4);
  auto input = torch::randn({2, 64});
  RunWith(*layer, DaqKernel::kLookup, input);
  const int64_t lookup = layer->ResidentBytes();
  RunWith(*layer, DaqKernel::kDecompress, input);
  const int64_t weight_bytes = 64 * 512 * 4;
  EXPECT_GE(layer->ResidentBytes() - lookup, weight_bytes - 256 * 8 * 4);
  // Prepared for serving: one float copy (the packed one), not two.
  layer->PrepareForInference();
  EXPECT_GE(layer->ResidentBytes() - lookup, weight_bytes - 256 * 8 * 4);
  EXPECT_LT(layer->ResidentBytes() - lookup, 2 * weight_bytes - 256 * 8 * 4);
}

// ------------------------------------------------------------ checkpoints

struct StoredTensor {
  checkpoint::DType dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};
using TensorMap = std::map<std::string, StoredTensor>;

class DaqCheckpointTest : public ::testing::Test {
 protected:
  // A tiny DAQ model with random codes, saved to `dir`.
  static void SaveTinyDaq(const fs::path& dir, const DaqParams& params) {
    ModelConfig config = testing::TinyConfig();
    config.weights_dtype = "float16";
    config.quantization = {"daq", DaqParamsToJson(params)};
    auto model = Transformer::Create(config);
    ASSERT_TRUE(model.ok()) << model.status();
    ASSERT_GT(testing::SetRandomDaqCodes(**model, torch::kFloat16), 10);
    ASSERT_TRUE(SaveModelDirectory(dir.string(), config, **model).ok());
  }

  static TensorMap ReadTensors(const fs::path& file) {
    TensorMap tensors;
    auto opened = checkpoint::SafetensorsFile::Open(file.string());
    EXPECT_TRUE(opened.ok());
    for (const auto& view : (*opened)->tensors()) {
      tensors[view.name] = {view.dtype, view.shape,
                            std::vector<uint8_t>(view.data, view.data + view.nbytes)};
    }
    return tensors;
  }

  static void WriteTensors(const fs::path& file, const TensorMap& tensors) {
    std::vector<checkpoint::TensorToWrite> out;
    for (const auto& [name, t] : tensors) {
      out.push_back({name, t.dtype, t.shape, t.bytes.data(), t.bytes.size()});
    }
    ASSERT_TRUE(checkpoint::WriteSafetensors(file.string(), out, {}).ok());
  }

  // Loads `dir` after `edit` changed its weights; returns the load status.
  static absl::Status LoadEdited(const DaqParams& params,
                                 const std::function<void(TensorMap&)>& edit) {
    const fs::path dir = fs::path(::testing::TempDir()) / "daq_checkpoint_test";
    fs::remove_all(dir);
    SaveTinyDaq(dir, params);
    TensorMap tensors = ReadTensors(dir / "model.safetensors");
    edit(tensors);
    WriteTensors(dir / "model.safetensors", tensors);
    return LoadTransformer(dir.string()).status();
  }

  static void ExpectRefused(const absl::Status& status, const std::string& needle) {
    EXPECT_FALSE(status.ok());
    EXPECT_NE(status.message().find(needle), std::string::npos) << status;
  }

  static constexpr char kLayer[] = "encoder.layers.0.ffn.fc1";
};

TEST_F(DaqCheckpointTest, SavedModelLoadsAndTranslatesTheSame) {
  DaqParams params;
  params.buckets = 2;
  params.centroids = 100;
  const fs::path dir = fs::path(::testing::TempDir()) / "daq_roundtrip_test";
  fs::remove_all(dir);
  SaveTinyDaq(dir, params);
  auto loaded = LoadTransformer(dir.string());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  auto again = LoadTransformer(dir.string());
  ASSERT_TRUE(again.ok());
  torch::NoGradGuard no_grad;
  auto source = torch::tensor({{5, 6, 7, 3}}, torch::kLong);
  auto target = torch::tensor({{2, 9, 10}}, torch::kLong);
  EXPECT_TRUE((*loaded)->Forward(source, target).equal((*again)->Forward(source, target)));
  // Prepared for serving (decompressed at load, prepacked products): the
  // same output up to float32 summation order.
  PrepareForInference(**again);
  EXPECT_TRUE(torch::allclose((*loaded)->Forward(source, target), (*again)->Forward(source, target),
                              1e-4, 1e-4));
  // Layers DAQ quantizes are DaqLinear; layer norms stay float.
  int quantized = 0;
  for (const auto& item : (*loaded)->named_modules()) {
    quantized += dynamic_cast<DaqLinear*>(item.value().get()) != nullptr;
  }
  EXPECT_EQ(quantized, 2 * (4 + 2) + 2 * (8 + 2) + 1);
}

TEST_F(DaqCheckpointTest, RefusesCodeOutOfRange) {
  DaqParams params;
  params.centroids = 200;
  ExpectRefused(
      LoadEdited(params,
                 [](TensorMap& t) { t[std::string(kLayer) + ".assignments"].bytes[3] = 250; }),
      "code 250 at row 0, block 3 is out of range for 200 centroids");
}

TEST_F(DaqCheckpointTest, RefusesFourBitCodeOutOfRange) {
  DaqParams params;
  params.bits = 4;
  params.centroids = 12;
  ExpectRefused(
      LoadEdited(params,
                 [](TensorMap& t) { t[std::string(kLayer) + ".assignments"].bytes[1] = 0xD0; }),
      "code 13 at row 0, block 3 is out of range for 12 centroids (4-bit codes)");
}

TEST_F(DaqCheckpointTest, RefusesWrongCodebookShape) {
  DaqParams params;
  ExpectRefused(LoadEdited(params,
                           [](TensorMap& t) {
                             auto& c = t[std::string(kLayer) + ".centroids"];
                             c.shape[1] -= 1;
                             c.bytes.resize(c.bytes.size() - 2 * c.shape[2]);
                           }),
                "tensor 'encoder.layers.0.ffn.fc1.centroids' has shape [1, 255, 8] but "
                "config.json implies [1, 256, 8]");
}

TEST_F(DaqCheckpointTest, RefusesMissingScales) {
  DaqParams params;
  params.centroid_dtype = "int8";
  ExpectRefused(
      LoadEdited(params, [](TensorMap& t) { t.erase(std::string(kLayer) + ".centroid_scales"); }),
      "tensor 'encoder.layers.0.ffn.fc1.centroid_scales' is missing");
}

TEST_F(DaqCheckpointTest, RefusesBadScales) {
  DaqParams params;
  params.centroid_dtype = "int8";
  for (uint16_t half : {0x0000, 0xBC00, 0x7E00}) {  // 0, -1, NaN in float16
    ExpectRefused(LoadEdited(params,
                             [half](TensorMap& t) {
                               auto& s = t[std::string(kLayer) + ".centroid_scales"];
                               s.bytes[0] = half & 0xFF;
                               s.bytes[1] = half >> 8;
                             }),
                  "every scale must be finite and positive");
  }
}

TEST_F(DaqCheckpointTest, RefusesBadBucketLayout) {
  DaqParams params;
  params.buckets = 4;
  ExpectRefused(LoadEdited(params,
                           [](TensorMap& t) {
                             auto& o = t[std::string(kLayer) + ".bucket_offsets"];
                             int32_t* rows = reinterpret_cast<int32_t*>(o.bytes.data());
                             rows[2] = rows[1];
                           }),
                "must increase strictly");
  ExpectRefused(LoadEdited(params,
                           [](TensorMap& t) {
                             auto& o = t[std::string(kLayer) + ".bucket_offsets"];
                             reinterpret_cast<int32_t*>(o.bytes.data())[4] = 1000;
                           }),
                "must run from 0 to 64");
}

TEST_F(DaqCheckpointTest, RefusesCodesOfAnotherIntegerType) {
  DaqParams params;
  ExpectRefused(LoadEdited(params,
                           [](TensorMap& t) {
                             t[std::string(kLayer) + ".assignments"].dtype = checkpoint::DType::kI8;
                           }),
                "is I8 but this layer expects U8");
}

TEST_F(DaqCheckpointTest, RefusesBadParameters) {
  ModelConfig config = testing::TinyConfig();
  for (const char* params :
       {R"({"bits": 5})", R"({"bits": 4, "centroids": 17})", R"({"buckets": 0})",
        R"({"roles": ["ffn"]})", R"({"block_size": {"attention": 0}})", R"({"codebooks": 1})"}) {
    config.quantization = {"daq", params};
    EXPECT_FALSE(Transformer::Create(config).ok()) << params;
  }
}

}  // namespace
}  // namespace quantmt
