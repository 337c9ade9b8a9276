#!/usr/bin/env python3
"""Tokenizer reference fixtures: what transformers loads from published tokenizer layouts.

For each layout below, transformers' AutoTokenizer loads the folder and records the rendered chat
prompt (one user turn: an image, then a text, with the generation prompt) and the token ids of a
dozen prompts. The TypeScript test (test/unit/tokenizerFiles.test.ts) opens the same folders with
the project's TextProcessor and compares.

Layouts (see tools/reference/README.md, "Tokenizer fixtures"):

* qwen25vl-published: ../shared/reference-configs/Qwen__Qwen2.5-VL-3B-Instruct as published
  (vocab.json + merges.txt + tokenizer_config.json, no tokenizer.json).
* qwen2vl-style: the Qwen2-VL-2B-Instruct layout, made from the folder above: transformers loads
  it and saves a tokenizer.json, whose added_tokens are then cut to the 12 base tokens (ids
  151643..151654), so <|image_pad|>, <|video_pad|>, <tool_call> and the rest exist only in the
  published tokenizer_config.json's added_tokens_decoder. The fixture keeps that tokenizer.json
  without its vocabulary and merges (tokenizer.skeleton.json; the script checks they equal
  vocab.json and merges.txt, from which the test fills them in).
* qwen2-legacy: the older slow-tokenizer save: vocab.json + merges.txt, a tokenizer_config.json
  without added_tokens_decoder / additional_special_tokens, added_tokens.json and
  special_tokens_map.json.
* llava-spm-bpe: the LLaMA-style SentencePiece-BPE tokenizer.json of
  test/fixtures/models/llava-gqa-f32/model. The ids of the `tokenizers` library reading that
  tokenizer.json are recorded beside transformers' (transformers 5 rebuilds the pipeline of some
  tokenizer classes instead of reading tokenizer.json's), and the cases where they differ listed.

Usage, from the repository root (needs transformers, tokenizers, jinja2; no torch, no network):

    python3 tools/reference/make_tokenizer_fixtures.py

test/fixtures/tokenizers/ is deleted and recreated. Deterministic: two runs give identical files.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import tokenizers  # noqa: E402
import transformers  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "test" / "fixtures" / "tokenizers"
QWEN25 = ROOT.parent / "shared" / "reference-configs" / "Qwen__Qwen2.5-VL-3B-Instruct"
LLAVA = ROOT / "test" / "fixtures" / "models" / "llava-gqa-f32" / "model"

# The ids of Qwen's base added tokens: the 12 that Qwen2-VL-2B-Instruct's tokenizer.json lists.
QWEN_BASE_ADDED = range(151643, 151655)

PROMPTS = [
    "Hello world",
    "",
    "  two leading spaces, trailing  ",
    "tabs\tand\t\tmore",
    "line one\nline two\n\n\nline five\r\nend\n",
    "Digits 1234567890, 3.14159 and 2024-11-30",
    "中文分词测试：你好，世界！今天天气很好。",
    "emoji 😀👍🏽 family 👨‍👩‍👧 flag 🇫🇷",
    "Привет, мир! Съешь же ещё этих мягких булок.",
    "don't I'LL we've THEY'RE it's",
    "caf\u00e9 vs cafe\u0301, na\u00efve \u212b",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "<|vision_start|>" + "<|image_pad|>" * 6 + "<|vision_end|>What is this?",
    "<|image_pad|><|image_pad|> <|video_pad|>\n<|vision_pad|>",
    "<tool_call>{\"name\": \"f\"}</tool_call><|fim_prefix|>x<|fim_suffix|>",
    "<image>\n<image> What? </s><s>",
    "a<|endoftext|>b<pad>c<unk>",
]

CHAT_TEXT = "What is shown in this image? Answer in one word."


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def log(msg: str) -> None:
    print(msg, flush=True)


def chat_template_of(folder: Path) -> str | None:
    """The template a processor would use: chat_template.jinja, then chat_template.json."""
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text(encoding="utf-8")
    if (folder / "chat_template.json").is_file():
        return json.loads((folder / "chat_template.json").read_text(encoding="utf-8"))["chat_template"]
    return None


def record(tok, folder: Path, raw: Tokenizer | None) -> dict:
    """What transformers produces for the chat prompt and every prompt of PROMPTS."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": CHAT_TEXT}]}]
    template = chat_template_of(folder)
    rendered = tok.apply_chat_template(messages, chat_template=template, tokenize=False, add_generation_prompt=True)
    # ProcessorMixin.apply_chat_template(tokenize=True): no special tokens when the template wrote BOS
    add_special = not (tok.bos_token is not None and rendered.startswith(tok.bos_token))
    out = {
        "chat": {
            "text": CHAT_TEXT,
            "rendered": rendered,
            "add_special_tokens": add_special,
            "ids": tok(rendered, add_special_tokens=add_special)["input_ids"],
        },
        "special_tokens": {
            "bos_token": tok.bos_token,
            "eos_token": tok.eos_token,
            "unk_token": tok.unk_token,
            "pad_token": tok.pad_token,
        },
        "eos_token_id": tok.eos_token_id,
        "added_tokens": {str(i): t.content for i, t in sorted(tok.added_tokens_decoder.items())},
        "special_added_tokens": sorted(i for i, t in tok.added_tokens_decoder.items() if t.special),
        "cases": [],
    }
    for text in PROMPTS:
        with_special = tok(text, add_special_tokens=True)["input_ids"]
        without = tok(text, add_special_tokens=False)["input_ids"]
        case = {
            "text": text,
            "ids": with_special,
            "ids_no_special": without,
            "decoded": tok.decode(without),
            "decoded_skip_special": tok.decode(without, skip_special_tokens=True),
        }
        if raw is not None:
            case["tokenizers_ids"] = raw.encode(text, add_special_tokens=True).ids
            case["tokenizers_ids_no_special"] = raw.encode(text, add_special_tokens=False).ids
            case["agree"] = case["tokenizers_ids"] == with_special and case["tokenizers_ids_no_special"] == without
        out["cases"].append(case)
    return out


def read_merges(path: Path) -> list[list[str]]:
    merges = []
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line.startswith("#version") or line == "":
            continue
        a, b = line.split(" ")
        merges.append([a, b])
    return merges


def as_pairs(merges) -> list[list[str]]:
    return [m.split(" ") if isinstance(m, str) else list(m) for m in merges]


def case_file(name: str, layout: str, source: str, data: dict) -> None:
    data = {
        "layout": layout,
        "folder": source,
        "transformers_version": transformers.__version__,
        "tokenizers_version": tokenizers.__version__,
        **data,
    }
    write_json(OUT / "cases" / f"{name}.json", data)


def qwen25_published(expected: dict | None = None) -> dict:
    tok = AutoTokenizer.from_pretrained(QWEN25)
    data = record(tok, QWEN25, None)
    log(f"qwen25vl-published: {type(tok).__name__}, {len(tok)} tokens, image pad {tok.convert_tokens_to_ids('<|image_pad|>')}")
    assert tok.convert_tokens_to_ids("<|image_pad|>") == 151655
    return data


def qwen2vl_style(published: dict) -> dict:
    folder = OUT / "qwen2vl-style"
    folder.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        AutoTokenizer.from_pretrained(QWEN25).save_pretrained(tmp)
        saved = json.loads((Path(tmp) / "tokenizer.json").read_text(encoding="utf-8"))
    # The saved vocabulary and merges are the published ones: the fixture keeps neither.
    vocab = json.loads((QWEN25 / "vocab.json").read_text(encoding="utf-8"))
    assert saved["model"]["vocab"] == vocab, "transformers saved a different vocabulary"
    merges_as_str = isinstance(saved["model"]["merges"][0], str)
    assert as_pairs(saved["model"]["merges"]) == read_merges(QWEN25 / "merges.txt"), "transformers saved different merges"
    saved["added_tokens"] = [t for t in saved["added_tokens"] if t["id"] in QWEN_BASE_ADDED]
    assert len(saved["added_tokens"]) == 12 and all(t["content"] != "<|image_pad|>" for t in saved["added_tokens"])
    saved["model"]["vocab"] = "@vocab.json"
    saved["model"]["merges"] = "@merges.txt as strings" if merges_as_str else "@merges.txt as pairs"
    write_json(folder / "tokenizer.skeleton.json", saved)
    for name in ("tokenizer_config.json", "chat_template.json"):
        shutil.copyfile(QWEN25 / name, folder / name)

    # Load the layout as the test will see it: the skeleton filled in.
    with tempfile.TemporaryDirectory() as tmp:
        full = dict(saved)
        full["model"] = dict(saved["model"], vocab=vocab, merges=read_merges(QWEN25 / "merges.txt"))
        if merges_as_str:
            full["model"]["merges"] = [" ".join(m) for m in full["model"]["merges"]]
        (Path(tmp) / "tokenizer.json").write_text(json.dumps(full, ensure_ascii=False), encoding="utf-8")
        for name in ("tokenizer_config.json", "chat_template.json"):
            shutil.copyfile(QWEN25 / name, Path(tmp) / name)
        tok = AutoTokenizer.from_pretrained(tmp)
        data = record(tok, Path(tmp), None)
        bare = Tokenizer.from_file(str(Path(tmp) / "tokenizer.json"))
        assert bare.token_to_id("<|image_pad|>") is None, "the stripped tokenizer.json still has <|image_pad|>"
    log(f"qwen2vl-style: {type(tok).__name__}, {len(tok)} tokens, image pad {tok.convert_tokens_to_ids('<|image_pad|>')}")
    assert tok.convert_tokens_to_ids("<|image_pad|>") == 151655
    assert data["cases"] == published["cases"] and data["chat"] == published["chat"], "the Qwen2-VL-style layout tokenizes differently"
    return data


def qwen2_legacy(published: dict) -> dict:
    folder = OUT / "qwen2-legacy"
    folder.mkdir(parents=True)
    config = json.loads((QWEN25 / "tokenizer_config.json").read_text(encoding="utf-8"))
    decoder = config.pop("added_tokens_decoder")
    additional = config.pop("additional_special_tokens")
    special_map = {"eos_token": config.pop("eos_token"), "pad_token": config.pop("pad_token"), "additional_special_tokens": additional}
    write_json(folder / "tokenizer_config.json", config)
    write_json(folder / "special_tokens_map.json", special_map)
    write_json(folder / "added_tokens.json", {t["content"]: int(i) for i, t in decoder.items()})
    shutil.copyfile(QWEN25 / "chat_template.json", folder / "chat_template.json")
    with tempfile.TemporaryDirectory() as tmp:
        for f in folder.iterdir():
            shutil.copyfile(f, Path(tmp) / f.name)
        for name in ("vocab.json", "merges.txt"):
            shutil.copyfile(QWEN25 / name, Path(tmp) / name)
        tok = AutoTokenizer.from_pretrained(tmp)
        data = record(tok, Path(tmp), None)
    log(f"qwen2-legacy: {type(tok).__name__}, {len(tok)} tokens, image pad {tok.convert_tokens_to_ids('<|image_pad|>')}")
    assert tok.convert_tokens_to_ids("<|image_pad|>") == 151655
    return data


def llava() -> dict:
    tok = AutoTokenizer.from_pretrained(LLAVA)
    raw = Tokenizer.from_file(str(LLAVA / "tokenizer.json"))
    data = record(tok, LLAVA, raw)
    differ = [c["text"] for c in data["cases"] if not c["agree"]]
    # transformers 5.23 loads this folder as a TokenizersBackend (tokenizer.json as it is), so the
    # `tokenizers` library's ids agree with it; should a version rebuild the pipeline (as it does
    # for a LlamaTokenizer class), the cases that differ are listed here.
    data["differ_from_tokenizer_json"] = differ
    log(f"llava-spm-bpe: {type(tok).__name__}, {len(tok)} tokens; transformers and tokenizer.json differ on {differ}")
    return data


def main() -> None:
    if not QWEN25.is_dir():
        sys.exit(f"{QWEN25} is missing: the shared reference configs must sit beside the repository")
    if OUT.exists():
        shutil.rmtree(OUT)
    (OUT / "cases").mkdir(parents=True)
    published = qwen25_published()
    case_file("qwen25vl-published", "vocab.json + merges.txt + tokenizer_config.json", "../shared/reference-configs/Qwen__Qwen2.5-VL-3B-Instruct", published)
    case_file("qwen2vl-style", "tokenizer.json with 12 added tokens + tokenizer_config.json added_tokens_decoder", "test/fixtures/tokenizers/qwen2vl-style (+ vocab.json, merges.txt of qwen25vl-published)", qwen2vl_style(published))
    case_file("qwen2-legacy", "vocab.json + merges.txt + added_tokens.json + special_tokens_map.json", "test/fixtures/tokenizers/qwen2-legacy (+ vocab.json, merges.txt of qwen25vl-published)", qwen2_legacy(published))
    case_file("llava-spm-bpe", "tokenizer.json (SentencePiece BPE, LlamaTokenizer)", "test/fixtures/models/llava-gqa-f32/model", llava())
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    log(f"wrote {OUT.relative_to(ROOT)} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
