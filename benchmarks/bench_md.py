"""Render `invrep bench --json` output as the Markdown tables of the README and model cards, so the
numbers in the docs are copied by a program, not by hand.

  python benchmarks/bench_md.py runs/measure/bench-cbsd68.json [more.json ...]
"""

from __future__ import annotations

import json
import sys


def fmt(value: object, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"  # type: ignore[str-format]


def main() -> None:
    for path in sys.argv[1:]:
        data = json.load(open(path))
        pairs = data.get("mode") == "pairs"
        print(f"<!-- {path} -->")
        head = "| level | method | backend | device | precision | MP/s | PSNR | SSIM |" if pairs else \
            "| σ | method | backend | device | precision | MP/s | PSNR | SSIM |"  # fmt: skip
        print(head)
        print("|---|---|---|---|---|---|---|---|")
        for row in data["rows"]:
            if row.get("skipped"):
                continue
            level = (row.get("noise_level") or "–") + (" (upper bound)" if row.get("upper_bound") else "")
            first = level if pairs else f"{row['sigma']:g}"
            method = row["method"]
            if method == "invrep":
                method = f"invrep ({row.get('weights', '')})"
            cells = [first, method, row["backend"], row["device"], row["precision"],
                     fmt(row.get("mp_per_s"), 3), fmt(row.get("psnr"), 2), fmt(row.get("ssim"), 3)]  # fmt: skip
            print("| " + " | ".join(cells) + " |")
        print()


if __name__ == "__main__":
    main()
