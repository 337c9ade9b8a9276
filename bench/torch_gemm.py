"""The torch side of bench/kernels.ts: one product shape in one dtype, timed as that bench times
onnxruntime's, printed as one JSON line.

    python3 bench/torch_gemm.py ROWS IN OUT PRODUCTS DTYPE THREADS

y = x @ W^T (torch.nn.functional.linear, what transformers' Linear runs) over a chain of
PRODUCTS weights of [OUT, IN], after a warm-up; the median of 5 runs, per product.
"""
import json
import statistics
import sys
import time

import torch


def main() -> None:
    rows, n_in, n_out, products = (int(a) for a in sys.argv[1:5])
    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[sys.argv[5]]
    threads = int(sys.argv[6])
    if threads:
        torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    weights = [(torch.rand(n_out, n_in, generator=gen) * 2 ** -9).to(dtype) for _ in range(products)]
    x = torch.rand(rows, n_in, generator=gen).to(dtype)
    times = []
    with torch.inference_mode():
        for i in range(6):
            t0 = time.perf_counter()
            for w in weights:
                y = torch.nn.functional.linear(x, w)
            times.append(time.perf_counter() - t0)
            assert y.shape == (rows, n_out)
    print(json.dumps({"perProductMs": statistics.median(times[1:]) * 1e3 / products, "threads": torch.get_num_threads(), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
