"""Recreate the small data copies shipped here from ../shared/data/text (seeded samples).

    python examples/data/text/make_subsets.py
"""

from __future__ import annotations

import random
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[3] / "shared" / "data" / "text"
SIZES = {"train": 400, "dev": 100, "test": 100}


def sample_tsv(src: Path, dst: Path, n: int, seed: int) -> None:
    header, *rows = src.read_text(encoding="utf-8").splitlines()
    keep = sorted(random.Random(seed).sample(range(len(rows)), min(n, len(rows))))
    dst.write_text("\n".join([header] + [rows[i] for i in keep]) + "\n", encoding="utf-8")


def sample_conll(src: Path, dst: Path, n: int, seed: int) -> None:
    sentences = [s for s in src.read_text(encoding="utf-8").split("\n\n") if s.strip()]
    keep = sorted(random.Random(seed).sample(range(len(sentences)), min(n, len(sentences))))
    dst.write_text("\n\n".join(sentences[i].strip("\n") for i in keep) + "\n", encoding="utf-8")


def main() -> int:
    if not SHARED.is_dir():
        print(f"skip: {SHARED} is absent")
        return 0
    for split, n in SIZES.items():
        (HERE / "afrisenti_swa").mkdir(exist_ok=True)
        (HERE / "masakhaner2_swa").mkdir(exist_ok=True)
        sample_tsv(SHARED / "afrisenti_swa" / f"{split}.tsv", HERE / "afrisenti_swa" / f"{split}.tsv", n, 0)
        sample_conll(SHARED / "masakhaner2_swa" / f"{split}.txt", HERE / "masakhaner2_swa" / f"{split}.txt", n, 0)
    (HERE / "jenga_ai_samples").mkdir(exist_ok=True)
    for path in sorted((SHARED / "jenga_ai_samples").iterdir()):
        shutil.copyfile(path, HERE / "jenga_ai_samples" / path.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
