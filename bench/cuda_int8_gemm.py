"""int8 GEMM (cuBLASLt, through torch._int_mm) against float16 at the decoder's shapes.

Prints microseconds per product (mean of 200, replayed in CUDA graphs so that
launch overhead does not count) for float16, the int8 product alone, and the
int8 product with the per-row quantization and rescaling an int8 layer needs.
This is why compressed checkpoints run as float twins on a GPU
(engine/model/dequantize.h). Needs PyTorch with CUDA:

    python3 bench/cuda_int8_gemm.py
"""
import torch

ROWS = (1, 8, 32, 64, 256, 1024)
# (in, out) of the reference shape's layers: fused q/k/v, fc1, fc2, output projection.
LAYERS = ((512, 1536), (512, 2048), (2048, 512), (512, 8000))
PRODUCTS = 200


def microseconds_per_call(fn):
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(20):
            fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(PRODUCTS // 20):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1000 / PRODUCTS


def main():
    torch.backends.cuda.matmul.allow_tf32 = False
    print(torch.cuda.get_device_name(), "PyTorch", torch.__version__)
    print(f"{'rows':>5} {'in -> out':>12} {'float16':>9} {'int8 only':>10} {'int8 layer':>11}")
    for rows in ROWS:
        for k, n in LAYERS:
            x = torch.randn(rows, k, device="cuda", dtype=torch.float16)
            w = torch.randn(n, k, device="cuda", dtype=torch.float16)
            # _int_mm wants more than 16 rows, a multiple of 8, and a column-major right side.
            padded = max(24, (rows + 7) // 8 * 8)
            xp = torch.randn(padded, k, device="cuda", dtype=torch.float16)
            codes = torch.randint(-127, 128, (n, k), device="cuda", dtype=torch.int8).t()
            column_scale = torch.rand(n, device="cuda", dtype=torch.float16)
            x_codes = torch.randint(-127, 128, (padded, k), device="cuda", dtype=torch.int8)

            def int8_layer():
                row_scale = xp.abs().amax(1, keepdim=True) / 127
                quantized = (xp / row_scale).round().to(torch.int8)
                return torch._int_mm(quantized, codes).to(torch.float16) * row_scale * column_scale

            fp16 = microseconds_per_call(lambda: torch.nn.functional.linear(x, w))
            only = microseconds_per_call(lambda: torch._int_mm(x_codes, codes))
            layer = microseconds_per_call(int8_layer)
            print(f"{rows:>5} {k:>5} -> {n:<5} {fp16:>9.2f} {only:>10.2f} {layer:>11.2f}")


if __name__ == "__main__":
    main()
