#!/usr/bin/env python3
"""Write the encoder model-directory fixtures of tests/it/encoders.rs.

One tiny random-weight sentence-embedding model per encoder layout, built and saved by
`transformers` itself (`save_pretrained`), laid out as sentence-transformers publishes
them (`modules.json`, `1_Pooling/config.json`), with a WordPiece tokenizer made here,
and the numbers `transformers` computes: the ids `AutoTokenizer` gives a fixed text, every
position's `last_hidden_state` (`hidden`, f32) and the pooled embedding the directory's
pooling config asks for (`pooled`: the mean of the rows, or the first row).

  bert         BertModel (all-MiniLM's, e5's shape): [CLS] $A [SEP], mean pooling,
               token-type embeddings (type 0 added to every position), f32 weights
  xlm_roberta  XLMRobertaModel (bge-m3's, multilingual-e5's): positions counted from
               pad_token_id + 1 = 2, <s> $A </s>, CLS pooling, LayerNorm weights saved
               under their names, bf16 weights
  bert_reranker  BertForSequenceClassification with one label (ms-marco-MiniLM's
               shape, a cross-encoder): [CLS] query [SEP] document [SEP], the document's
               tokens of type 1; `scores` holds the logit of each of PAIRS
  xlm_roberta_reranker  XLMRobertaForSequenceClassification with one label
               (bge-reranker's): <s> query </s></s> document </s>, one token type

Each model's weights are perturbed (the LayerNorms off ones and zeros) and scaled so the
MLP's inputs reach the range where exact GELU and its tanh approximation differ; the
script checks that the tanh form, and a causal mask, each move `hidden` by more than
the tests' tolerance.

Run (needs torch + transformers; CI never runs this):
    python3 -m venv /tmp/pyenv && /tmp/pyenv/bin/pip install torch transformers
    /tmp/pyenv/bin/python tools/make_encoder_fixtures.py tests/fixtures/encoders [NAME ...]
"""
import json
import os
import re
import shutil
import sys
import zlib

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import (
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    PreTrainedTokenizerFast,
    XLMRobertaConfig,
)

TEXT = (
    "The quick brown fox jumps over the lazy dog. Tiny encoders embed the same "
    "words: every token sees every other one."
)
CORPUS = [TEXT, "Hello world! Sentence embeddings run on GPUs, and on CPUs too."] * 4
# (query, document) pairs the rerankers score
PAIRS = [
    ("what runs on gpus?", "Transformers run on GPUs, and on CPUs too."),
    ("what runs on gpus?", "The quick brown fox jumps over the lazy dog."),
    ("hello", "Hello world!"),
]
# the largest difference the tests allow between these numbers and the service's
TOLERANCE = 2e-4


def train_tokenizer(specials, cls, sep, typed=False) -> Tokenizer:
    # a WordPiece vocabulary made in a fixed order (the trainer breaks ties in a
    # different order each run): the specials, every character alone and as a
    # continuation, and the corpus's words of up to 5 letters, so longer words split
    # into pieces
    words = {w for text in CORPUS for w in re.findall(r"\w+|[^\w\s]", text.lower())}
    chars = sorted({c for w in words for c in w})
    vocab = list(specials) + chars + ["##" + c for c in chars]
    vocab += sorted(w for w in words if 1 < len(w) <= 5)
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token=specials[-1]))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        # BERT's pair template types the second text 1 (`$B:1 [SEP]:1`, as
        # bert-base-uncased's tokenizer.json); XLM-R's `<s> $A </s></s> $B </s>` none
        pair=f"{cls} $A {sep} $B:1 {sep}:1" if typed else f"{cls} $A {sep} {sep} $B {sep}",
        special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))],
    )
    return tok


def perturb(model: torch.nn.Module, scale: float) -> None:
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "LayerNorm" in name:
                p.add_(0.1 * noise)
            else:
                p.mul_(scale).add_(0.01 * noise)


def hidden_of(model, ids):
    with torch.no_grad():
        return model(ids).last_hidden_state.float()[0].contiguous()


def save(out, name, make, config, dtype, specials, cls, sep, scale, typed=False):
    """A fresh directory `out/name` with a tokenizer trained for it and the model
    `make(config)` builds, perturbed and rounded to `dtype` (before the reference
    numbers are computed), both saved there; its path."""
    path = os.path.join(out, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    torch.manual_seed(zlib.crc32(name.encode()) % 1000)
    tok = train_tokenizer(specials, cls, sep, typed)
    config.vocab_size = tok.get_vocab_size()
    model = make(config).eval()
    perturb(model, scale)
    model.to(dtype).to(torch.float32)
    model.to(dtype).save_pretrained(path)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, cls_token=cls, sep_token=sep, pad_token=specials[0],
        unk_token=specials[-1],
    )
    fast.save_pretrained(path)
    return path


def expect(path, tensors, dtype, meta):
    """The numbers the tests expect (`expected.safetensors`) and what they were made
    of (`fixture.json`: `meta`, the tolerance, the versions)."""
    save_file(tensors, os.path.join(path, "expected.safetensors"))
    meta = {
        **meta,
        "tolerance": TOLERANCE,
        "dtype": str(dtype).replace("torch.", ""),
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
    }
    with open(os.path.join(path, "fixture.json"), "w") as f:
        json.dump(meta, f, indent=1)


def build(out, name, config, dtype, specials, cls, sep, pooling, scale):
    def make(cfg):
        return AutoModel.from_config(cfg, attn_implementation="eager", add_pooling_layer=False)
    path = save(out, name, make, config, dtype, specials, cls, sep, scale)
    with open(os.path.join(path, "modules.json"), "w") as f:
        json.dump([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ], f, indent=2)
    os.makedirs(os.path.join(path, "1_Pooling"))
    with open(os.path.join(path, "1_Pooling", "config.json"), "w") as f:
        json.dump({
            "word_embedding_dimension": config.hidden_size,
            "pooling_mode_cls_token": pooling == "cls",
            "pooling_mode_mean_tokens": pooling == "mean",
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
        }, f, indent=2)

    auto = AutoTokenizer.from_pretrained(path)
    ids = auto(TEXT)["input_ids"]
    reloaded = AutoModel.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
    input_ids = torch.tensor([ids])
    hidden = hidden_of(reloaded, input_ids)
    pooled = hidden.mean(0) if pooling == "mean" else hidden[0]

    # what the tests would miss without exact GELU, or with a causal mask
    reloaded.config.hidden_act = "gelu_pytorch_tanh"
    from transformers.activations import ACT2FN
    for layer in reloaded.encoder.layer:
        layer.intermediate.intermediate_act_fn = ACT2FN["gelu_pytorch_tanh"]
    tanh_moved = (hidden_of(reloaded, input_ids) - hidden).abs().max().item()
    for layer in reloaded.encoder.layer:
        layer.intermediate.intermediate_act_fn = ACT2FN["gelu"]
    t = len(ids)
    causal = torch.tril(torch.ones(t, t)).bool()
    mask = torch.zeros(1, 1, t, t).masked_fill(~causal, float("-inf"))
    with torch.no_grad():
        emb = reloaded.embeddings(input_ids=input_ids)
        x = emb
        for layer in reloaded.encoder.layer:
            x = layer(x, attention_mask=mask)
            x = x[0] if isinstance(x, tuple) else x
    causal_moved = (x[0] - hidden).abs().max().item()
    print(name, "tanh GELU moves hidden by", tanh_moved, "a causal mask by", causal_moved)
    assert tanh_moved > 2 * TOLERANCE, tanh_moved
    assert causal_moved > 2 * TOLERANCE, causal_moved

    expect(path, {"hidden": hidden, "pooled": pooled.clone()}, dtype,
           {"text": TEXT, "input_ids": ids, "pooling": pooling})
    print(name, len(ids), "tokens", sorted(os.listdir(path)))


def build_reranker(out, name, config, dtype, specials, cls, sep, scale, typed):
    config.num_labels = 1
    def make(cfg):
        return AutoModelForSequenceClassification.from_config(cfg, attn_implementation="eager")
    path = save(out, name, make, config, dtype, specials, cls, sep, scale, typed)
    auto = AutoTokenizer.from_pretrained(path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(
        path, dtype=torch.float32, attn_implementation="eager").eval()
    ids, scores = [], []
    for q, d in PAIRS:
        enc = auto(q, d, return_tensors="pt", return_token_type_ids=True)
        types = enc["token_type_ids"][0].tolist()
        # the document's tokens are of type 1 in BERT's pairs (what the position
        # table's second half carries), of none in XLM-R's
        assert (types.count(1) > 0) == typed, types
        with torch.no_grad():
            logit = reloaded(**enc).logits.float()[0, 0].item()
            if typed:
                untyped = reloaded(input_ids=enc["input_ids"]).logits.float()[0, 0].item()
                print(name, "types move the score by", abs(untyped - logit))
                assert abs(untyped - logit) > 10 * TOLERANCE
        scores.append(logit)
        ids.append(enc["input_ids"][0].tolist())
    print(name, "scores", scores)
    assert max(scores) - min(scores) > 10 * TOLERANCE
    expect(path, {"scores": torch.tensor(scores)}, dtype, {"pairs": PAIRS, "input_ids": ids})
    print(name, sorted(os.listdir(path)))


def main(out, only):
    common = dict(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=96,
        max_position_embeddings=128,
        type_vocab_size=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    if not only or "bert" in only:
        build(out, "bert", BertConfig(**common, pad_token_id=0), torch.float32,
              ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"], "[CLS]", "[SEP]", "mean", 8.0)
    if not only or "xlm_roberta" in only:
        cfg = XLMRobertaConfig(**{**common, "max_position_embeddings": 130, "type_vocab_size": 1},
                               pad_token_id=1, bos_token_id=0, eos_token_id=2)
        build(out, "xlm_roberta", cfg, torch.bfloat16,
              ["<s>", "<pad>", "</s>", "<unk>"], "<s>", "</s>", "cls", 8.0)
    if not only or "bert_reranker" in only:
        build_reranker(out, "bert_reranker", BertConfig(**common, pad_token_id=0),
                       torch.float32, ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"],
                       "[CLS]", "[SEP]", 8.0, True)
    if not only or "xlm_roberta_reranker" in only:
        cfg = XLMRobertaConfig(**{**common, "max_position_embeddings": 130, "type_vocab_size": 1},
                               pad_token_id=1, bos_token_id=0, eos_token_id=2)
        build_reranker(out, "xlm_roberta_reranker", cfg, torch.float32,
                       ["<s>", "<pad>", "</s>", "<unk>"], "<s>", "</s>", 8.0, False)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
