"""torch's own float16 -> float32 and bfloat16 -> float32 conversion of every 16-bit pattern,
as the SHA-256 of the little-endian float32 bits (all 65,536 of each) and a few named patterns,
for test/unit/halfToFloat.test.ts. The sidecar widens half-precision weights itself and must
give the very bits transformers' `.to(torch.float32)` gives.

usage: python3 tools/reference/make_half_conversion_fixtures.py
"""
import hashlib, json
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parents[2] / "test/fixtures/halfConversion/torch.json"
NAMED = {
    "float16": [0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x3C00, 0x7BFF, 0x7C00, 0xFC00, 0x7C01, 0x7DFF, 0x7E00, 0xFE00, 0xFFFF],
    "bfloat16": [0x0000, 0x8000, 0x0001, 0x007F, 0x0080, 0x3F80, 0x7F7F, 0x7F80, 0xFF80, 0x7F81, 0x7FC0, 0xFFC1, 0xFFFF],
}


def main() -> None:
    patterns = torch.arange(65536, dtype=torch.int32).to(torch.int16)
    out = {"torch": torch.__version__}
    for name, dtype in (("float16", torch.float16), ("bfloat16", torch.bfloat16)):
        bits = patterns.view(dtype).to(torch.float32).view(torch.int32).numpy().astype("<i4")
        out[name] = {
            "sha256": hashlib.sha256(bits.tobytes()).hexdigest(),
            "named": {f"0x{h:04x}": f"0x{int(bits[h]) & 0xFFFFFFFF:08x}" for h in NAMED[name]},
        }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
