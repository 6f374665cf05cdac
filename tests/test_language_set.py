"""The final detector over the whole labelled language set (bench/data): at least 97 % right."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from adaldyk_bots.language import detect_language

DATA = Path(__file__).resolve().parent.parent / "bench" / "data"
SETS = {"tune": DATA / "language_set.tsv", "holdout": DATA / "language_holdout.tsv"}
REQUIRED = 0.97


def _rows() -> list[dict[str, str]]:
    rows = []
    for split, path in SETS.items():
        with path.open(encoding="utf-8", newline="") as f:
            rows += [
                {**row, "split": split} for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            ]
    return rows


def test_the_set_is_what_the_bench_reports():
    rows = _rows()
    assert len(rows) >= 400
    assert {row["expected"] for row in rows} == {"kk", "ru", "en"}
    assert all(row["text"] and row["class"] for row in rows)


def test_language_set_accuracy():
    rows = _rows()
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    wrong = []
    for row in rows:
        got = str(detect_language(row["text"], hint=row["hint"] or None))
        for key in (row["class"], row["split"], "overall"):
            totals[key][1] += 1
            totals[key][0] += got == row["expected"]
        if got != row["expected"]:
            wrong.append(
                f"  [{row['split']}/{row['class']}] expected {row['expected']}, got {got}: {row['text']}"
            )
    ok, total = totals["overall"]
    report = "\n".join(
        f"{key:<20} {good:>4}/{n:<4} {100 * good / n:5.1f}%" for key, (good, n) in sorted(totals.items())
    )
    assert ok / total >= REQUIRED, f"{ok}/{total} below {REQUIRED:.0%}\n{report}\nwrong:\n" + "\n".join(wrong)
