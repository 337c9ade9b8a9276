"""Pieces shared by train.py and eval.py: tokenizer, processor, prompt rendering, batching."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers  # noqa: E402
from transformers import CLIPImageProcessorPil, LlamaTokenizerFast, LlavaProcessor  # noqa: E402

import scenes  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL_DIR = REPO_ROOT / "media" / "models" / "lens-scenes-tiny"

PATCH_SIZE = 16
NUM_IMAGE_TOKENS = (scenes.IMAGE_SIZE // PATCH_SIZE) ** 2  # "default" strategy: CLS dropped
OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

# LLaVA-1.5-style chat template, the same text as tools/reference/make_fixtures.py uses (the
# project's JS Jinja renders it): "USER: <image>\n{text} ASSISTANT:"
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] != 'system' -%}{{ message['role'] | upper }}{{ ': ' }}{%- endif -%}"
    "{%- for item in message['content'] | selectattr('type', 'equalto', 'image') -%}"
    "{{ '<image>\\n' }}"
    "{%- endfor -%}"
    "{%- for item in message['content'] | selectattr('type', 'equalto', 'text') -%}"
    "{{ item['text'] }}{{ ' ' }}"
    "{%- endfor -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'ASSISTANT:' }}{%- endif -%}"
)


def render_prompt(question: str) -> str:
    """What CHAT_TEMPLATE renders for one user turn with an image (checked against it in train.py)."""
    return f"USER: <image>\n{question} ASSISTANT:"


def messages_for(question: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]


def set_determinism(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)


# --------------------------------------------------------------------------- tokenizer


def build_tokenizer(vocab_size: int = 640, from_file: Path | None = None) -> LlamaTokenizerFast:
    """LLaMA-style SentencePiece-BPE: <unk>=0 <s>=1 </s>=2, 256 byte pieces, learned pieces,
    then <image> and <pad>. Merges are learned within words (split at "▁" and punctuation), so
    every colour, shape, number word and character of the data is one piece with its leading "▁".
    With `from_file`, the tokenizer.json of a saved model instead (to continue training it)."""
    if from_file is not None:
        return _wrap(Tokenizer.from_file(str(from_file)))
    corpus = scenes.corpus_lines()
    trainer_tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    # corpus lines carry their own leading spaces; punctuation is isolated while learning so
    # "circle?" gives "▁circle" + "?" (the piece the answer uses), not a piece of its own
    trainer_tok.normalizer = normalizers.Replace(" ", "▁")
    trainer_tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True),
        pre_tokenizers.Punctuation("isolated"),
    ])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False
    )
    trainer_tok.train_from_iterator(corpus, trainer=trainer)
    trained = json.loads(trainer_tok.to_str())["model"]

    vocab: dict[str, int] = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece, _ in sorted(trained["vocab"].items(), key=lambda kv: kv[1]):
        if piece not in vocab:
            vocab[piece] = len(vocab)
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in trained["merges"]]

    # the saved tokenizer.json has LLaMA's shape: Prepend + Replace normalizer, no pre-tokenizer
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = None
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ["<unk>", "<s>", "</s>"]])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ["<image>", "<pad>"]])
    return _wrap(tok)


def _wrap(tok: Tokenizer) -> LlamaTokenizerFast:
    hf_tok = LlamaTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        add_bos_token=True, add_eos_token=False, legacy=True,
    )
    assert hf_tok.convert_tokens_to_ids(["<unk>", "<s>", "</s>"]) == [0, 1, 2]
    # one-word answers must be single pieces
    for word in answer_words():
        ids = tok.encode(word, add_special_tokens=False).ids
        assert len(ids) == 1, f"answer {word!r} is not one token: {tok.encode(word, add_special_tokens=False).tokens}"
    return hf_tok


def answer_words() -> list[str]:
    return list(scenes.COLORS) + scenes.SHAPES + scenes.NUMBER_WORDS[1:] + scenes.CHARACTERS


def make_processor(tok) -> LlavaProcessor:
    image_processor = CLIPImageProcessorPil(
        do_resize=True,
        size={"shortest_edge": scenes.IMAGE_SIZE},
        resample=3,
        do_center_crop=True,
        crop_size={"height": scenes.IMAGE_SIZE, "width": scenes.IMAGE_SIZE},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=OPENAI_CLIP_MEAN,
        image_std=OPENAI_CLIP_STD,
        do_convert_rgb=True,
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
        image_token="<image>",
    )


# --------------------------------------------------------------------------- batches


_MEAN = np.array(OPENAI_CLIP_MEAN, dtype=np.float32)
_STD = np.array(OPENAI_CLIP_STD, dtype=np.float32)


def pixels(image) -> np.ndarray:
    """CLIPImageProcessorPil's output for an IMAGE_SIZE square RGB image (its resize and crop are
    the identity there): rescale in float64, cast to float32, normalise. CHW float32."""
    arr = (np.asarray(image, dtype=np.float64) * (1 / 255)).astype(np.float32)
    arr = (arr - _MEAN) / _STD
    return arr.transpose(2, 0, 1).copy()


class Encoder:
    """Token ids of a sample straight from tokenizer.json (train.py checks they equal the
    reloaded processor's ids)."""

    def __init__(self, raw: Tokenizer, image_token_id: int, eos_id: int):
        self.raw = raw
        self.image_token_id = image_token_id
        self.eos_id = eos_id
        self._cache: dict[str, list[int]] = {}

    def prompt_ids(self, question: str) -> list[int]:
        if question not in self._cache:
            expanded = render_prompt(question).replace("<image>", "<image>" * NUM_IMAGE_TOKENS)
            ids = self.raw.encode(expanded).ids
            assert ids.count(self.image_token_id) == NUM_IMAGE_TOKENS
            self._cache[question] = ids
        return self._cache[question]

    def answer_ids(self, answer: str) -> list[int]:
        # the answer follows "ASSISTANT:" after a space; pieces never cross a "▁", so encoding it
        # alone gives the same ids as encoding prompt + " " + answer
        return self.raw.encode(answer, add_special_tokens=False).ids + [self.eos_id]


def on_device(t: torch.Tensor) -> torch.Tensor:
    """torch.from_numpy ignores torch.set_default_device (train.py --device): move it there."""
    return t.to(torch.get_default_device())


def collate(samples, enc: Encoder, pad_id: int):
    """Right-padded batch; targets are the answer tokens and EOS only."""
    seqs, targets = [], []
    for s in samples:
        p = enc.prompt_ids(s.question)
        a = enc.answer_ids(s.answer)
        seqs.append(p + a)
        targets.append((len(p), a))
    n = max(len(x) for x in seqs)
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    pos_b, pos_t, labels = [], [], []
    for b, (x, (start, a)) in enumerate(zip(seqs, targets)):
        ids[b, : len(x)] = torch.tensor(x)
        mask[b, : len(x)] = 1
        for k, t in enumerate(a):
            pos_b.append(b)
            pos_t.append(start - 1 + k)  # the position that predicts answer token k
            labels.append(t)
    pv = on_device(torch.from_numpy(np.stack([pixels(s.image) for s in samples])))
    return ids, mask, pv, torch.tensor(pos_b), torch.tensor(pos_t), torch.tensor(labels)


def prefix_ids(enc: Encoder) -> list[int]:
    """The ids every sample starts with: BOS, "USER:", the image tokens, "\\n". The question
    starts right after them, so their keys and values can be computed once per image."""
    ids = enc.prompt_ids("What")
    last_image = len(ids) - 1 - ids[::-1].index(enc.image_token_id)
    newline = enc.raw.token_to_id("<0x0A>")
    assert ids[last_image + 2] == newline, enc.raw.id_to_token(ids[last_image + 2])
    return ids[: last_image + 3]


def collate_shared(items, enc: Encoder, prefix: list[int], pad_id: int):
    """Batch of images, each with several questions: pixel values [B, 3, H, W], the question
    rows (everything after the shared prefix, answer and EOS included) right-padded [R, T],
    the image of each row, and the (row, position) that predicts each answer token."""
    rows, row_img, pos_r, pos_t, labels = [], [], [], [], []
    P = len(prefix)
    for b, item in enumerate(items):
        for q in item.questions:
            full = enc.prompt_ids(q.question)
            assert full[:P] == prefix, q.question
            tail = full[P:]
            a = enc.answer_ids(q.answer)
            r = len(rows)
            rows.append(tail + a)
            row_img.append(b)
            for k, t in enumerate(a):
                pos_r.append(r)
                pos_t.append(len(tail) - 1 + k)
                labels.append(t)
    n = max(len(x) for x in rows)
    ids = torch.full((len(rows), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), n), dtype=torch.long)
    for r, x in enumerate(rows):
        ids[r, : len(x)] = torch.tensor(x)
        mask[r, : len(x)] = 1
    pv = on_device(torch.from_numpy(np.stack([pixels(item.image) for item in items])))
    return pv, ids, mask, torch.tensor(row_img), torch.tensor(pos_r), torch.tensor(pos_t), torch.tensor(labels)
