// GEMM kernels on the reference shape's layer shapes: GOP/s per kernel and
// the fraction of this machine kind's instruction peaks (docs/benchmarks.md:
// fp32 451 GFLOP/s, int8 VNNI 1805 GOP/s with 2 threads).
//
// Rows M: 1 and 8 (decoding steps), 32 and 64 (batched steps), 960 (the
// encoder at batch 32 x 30 tokens). Columns: [N x K] weight shapes.
// Kernels:
//   fp32 torch      what FloatLinear runs without oneDNN (DenseForward:
//                   at::mv at M=1, else at::linear on OpenBLAS)
//   fp32 onednn     oneDNN matmul, weights prepacked
//   int8 torch      LibTorch quantized::linear_dynamic, onednn engine
//   int8 onednn     oneDNN s8s8->s32 matmul alone, weights prepacked
//   int8 vnni       the hand-written AVX-512 VNNI kernel's product alone
//   layer onednn    Int8Linear::Forward on oneDNN: quantize rows, oneDNN,
//                   scales and bias, three passes
//   layer vnni      Int8Linear::Forward on the VNNI kernel: one pass
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "kernels/dnnl_matmul.h"
#include "kernels/int8_gemm.h"
#include "kernels/int8_gemm_vnni.h"
#include "model/int8_linear.h"

namespace {

constexpr double kPeakFp32 = 451e9, kPeakInt8 = 1805e9;

// Median seconds per call over `repeats` timings of enough calls for ~20 ms.
double SecondsPerCall(const std::function<void()>& call, int repeats) {
  call();  // warm up (primitive creation, caches)
  int calls = 1;
  for (;;) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < calls; ++i) call();
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (elapsed > 0.02 || calls >= (1 << 20)) break;
    calls *= 2;
  }
  std::vector<double> times;
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < calls; ++i) call();
    times.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / calls);
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

c10::IValue CallOp(const char* name, std::vector<c10::IValue> stack) {
  auto op = c10::Dispatcher::singleton().findSchemaOrThrow(name, "");
  op.callBoxed(&stack);
  return stack[0];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"quantmt GEMM kernels: GOP/s on the reference shape's layers"};
  int threads = 2, repeats = 5;
  std::vector<int64_t> rows = {1, 8, 32, 64, 960};
  app.add_option("--threads", threads, "Intra-op threads")->capture_default_str();
  app.add_option("--repeats", repeats, "Timings per cell (median)")->capture_default_str();
  app.add_option("--rows", rows, "Row counts M")->delimiter(',');
  CLI11_PARSE(app, argc, argv);
  torch::set_num_threads(threads);
  torch::NoGradGuard no_grad;
  at::globalContext().setQEngine(at::QEngine::ONEDNN);

  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {512, 512}, {2048, 512}, {512, 2048}, {8000, 512}};  // {N, K}
  std::printf("GEMM kernels, %d threads, LibTorch %s, oneDNN %s; GOP/s (%% of peak)\n", threads,
              TORCH_VERSION, quantmt::kernels::HaveDnnl() ? "on" : "off");
  std::printf("%5s %11s %16s %16s %16s %16s %16s %16s %16s\n", "M", "N x K", "fp32 torch",
              "fp32 onednn", "int8 torch", "int8 onednn", "int8 vnni", "layer onednn",
              "layer vnni");
  for (auto [n, k] : shapes) {
    torch::manual_seed(n + k);
    auto weight = torch::randn({n, k}) * 0.05;
    auto bias = torch::randn({n}) * 0.1;
    auto fp32_dnnl = quantmt::kernels::DnnlMatmul::Create(
        quantmt::kernels::DnnlMatmul::Kind::kFloat32, weight.data_ptr<float>(),
        bias.data_ptr<float>(), n, k);
    quantmt::Int8Linear layer(k, n, true, quantmt::Int8Mode::kDynamic);
    layer.SetFromFloat(weight, bias);
    layer.PrepareForInference();
    auto codes = layer.weight().contiguous();
    auto int8_dnnl = quantmt::kernels::DnnlMatmul::Create(quantmt::kernels::DnnlMatmul::Kind::kInt8,
                                                          codes.data_ptr<int8_t>(), nullptr, n, k);
    auto qweight = torch::quantize_per_channel(weight, layer.weight_scale().to(torch::kDouble),
                                               torch::zeros({n}, torch::kLong), 0, torch::kQInt8);
    c10::IValue packed = CallOp("quantized::linear_prepack", {qweight, bias});
    std::unique_ptr<quantmt::kernels::Int8GemmVnni> vnni;
    if (quantmt::kernels::HaveAvx512Vnni()) {
      vnni = std::make_unique<quantmt::kernels::Int8GemmVnni>(codes.data_ptr<int8_t>(), n, k);
    }

    for (int64_t m : rows) {
      auto x = torch::randn({m, k});
      auto x8 = torch::randint(-127, 128, {m, k}).to(torch::kInt8);
      auto out = torch::empty({m, n});
      auto acc = torch::empty({m, n}, torch::kInt32);
      const double ops = 2.0 * m * n * k;
      auto cell = [&](const std::function<void()>& call, double peak) {
        const double gops = ops / SecondsPerCall(call, repeats) / 1e9;
        char text[32];
        std::snprintf(text, sizeof(text), "%7.1f (%4.1f%%)", gops, 100 * gops * 1e9 / peak);
        return std::string(text);
      };
      const std::string na = "n/a";
      // The layer with every row count sent to oneDNN (0) or to the VNNI kernel.
      auto layer_on = [&](int64_t vnni_max_rows) {
        if ((vnni_max_rows == 0 ? !quantmt::kernels::HaveDnnl() : !vnni)) return na;
        quantmt::kernels::Int8Gemm::SetVnniMaxRows(vnni_max_rows);
        std::string text = cell([&] { layer.Forward(x); }, kPeakInt8);
        quantmt::kernels::Int8Gemm::SetVnniMaxRows(quantmt::kernels::Int8Gemm::kDefaultVnniMaxRows);
        return text;
      };
      std::printf(
          "%5lld %5lldx%-5lld %16s %16s %16s %16s %16s %16s %16s\n", static_cast<long long>(m),
          static_cast<long long>(n), static_cast<long long>(k),
          cell([&] { quantmt::DenseForward(x, weight, bias); }, kPeakFp32).c_str(),
          fp32_dnnl.ok()
              ? cell([&] { (*fp32_dnnl)->Run(x.data_ptr(), m, out.data_ptr(), threads); },
                     kPeakFp32)
                    .c_str()
              : na.c_str(),
          cell(
              [&] {
                CallOp("quantized::linear_dynamic", {x, packed, false});
              },
              kPeakInt8)
              .c_str(),
          int8_dnnl.ok()
              ? cell([&] { (*int8_dnnl)->Run(x8.data_ptr(), m, acc.data_ptr(), threads); },
                     kPeakInt8)
                    .c_str()
              : na.c_str(),
          vnni ? cell(
                     [&] {
                       vnni->Multiply(x8.data_ptr<int8_t>(), m, acc.data_ptr<int32_t>(), threads);
                     },
                     kPeakInt8)
                     .c_str()
               : na.c_str(),
          layer_on(0).c_str(), layer_on(quantmt::kernels::Int8Gemm::kDefaultVnniMaxRows).c_str());
      std::fflush(stdout);
    }
  }
  return 0;
}
