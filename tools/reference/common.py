"""Helpers shared by the reference-fixture scripts in this folder."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch


def log(msg: str) -> None:
    print(msg, flush=True)


def set_determinism() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
