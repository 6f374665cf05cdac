"""Language detection benchmark: accuracy per class and time per text on the labelled set in bench/data.

    pip install -e '.[bench]'    # py3langid, measured but not used by the service
    python bench/language_bench.py [--detectors before,lingua,py3langid,adaldyk] [--repeat N] [--misses]

Each detector runs in its own child process, so its memory (peak RSS of the process minus the RSS
before the detector was loaded) and first-call time are its own. Every detector gets the same rule
for texts without letters (the hint, else Kazakh), which is the behaviour the service must keep; the
libraries otherwise see the raw text.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
SPLITS = {"tune": DATA / "language_set.tsv", "holdout": DATA / "language_holdout.tsv"}
DETECTORS = ("before", "lingua", "py3langid", "adaldyk", "adaldyk-low")

Detect = Callable[[str, str | None], str]


def load_rows() -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for split, path in SPLITS.items():
        with path.open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
                rows.append({**row, "split": split})
    return rows


def _has_letters(text: str) -> bool:
    return any(ch.isalpha() for ch in text)


def _hint(hint: str | None) -> str:
    from adaldyk_bots.language import language_from_hint

    return str(language_from_hint(hint))


# Today's detector before issue 6 (commit a62a9ab), kept here verbatim so it can still be measured.
_BEFORE_KAZAKH_LETTERS = set("әғқңөұүһіӘҒҚҢӨҰҮҺІ")
_BEFORE_KAZAKH_WORDS = {
    "мен",
    "сен",
    "керек",
    "туралы",
    "бойынша",
    "неге",
    "кезде",
    "жер",
    "ауыл",
    "мекенжай",
}
_BEFORE_WORD = re.compile(r"\w+", re.UNICODE)


def _before(text: str, hint: str | None) -> str:
    letters = [ch for ch in text if ch.isalpha()]
    if any(ch in _BEFORE_KAZAKH_LETTERS for ch in letters):
        return "kk"
    cyrillic = sum(1 for ch in letters if "\u0400" <= ch <= "\u04ff")
    latin = sum(1 for ch in letters if ch.isascii())
    if cyrillic and cyrillic >= latin:
        words = {w.lower() for w in _BEFORE_WORD.findall(text)}
        return "kk" if words & _BEFORE_KAZAKH_WORDS else "ru"
    if latin:
        return "en"
    return _hint(hint)


def build(name: str) -> Detect:
    if name == "before":
        return _before
    if name == "lingua":
        from lingua import Language, LanguageDetectorBuilder

        lingua = LanguageDetectorBuilder.from_languages(
            Language.KAZAKH, Language.RUSSIAN, Language.ENGLISH
        ).build()
        codes = {Language.KAZAKH: "kk", Language.RUSSIAN: "ru", Language.ENGLISH: "en"}

        def detect_lingua(text: str, hint: str | None) -> str:
            if not _has_letters(text):
                return _hint(hint)
            found = lingua.detect_language_of(text)
            return codes[found] if found is not None else _hint(hint)

        return detect_lingua
    if name == "py3langid":
        import py3langid

        py3langid.set_languages(["kk", "ru", "en"])

        def detect_langid(text: str, hint: str | None) -> str:
            if not _has_letters(text):
                return _hint(hint)
            return str(py3langid.classify(text)[0])

        return detect_langid
    if name in ("adaldyk", "adaldyk-low"):
        from adaldyk_bots import language

        if name == "adaldyk-low":
            # The alternative we did not take: lingua's low-accuracy mode (trigrams only) in our detector.
            from lingua import Language, LanguageDetectorBuilder

            low = LanguageDetectorBuilder.from_languages(Language.KAZAKH, Language.RUSSIAN)
            language._kazakh_russian_detector = functools.cache(low.with_low_accuracy_mode().build)

        return lambda text, hint: str(language.detect_language(text, hint=hint))
    raise SystemExit(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}")


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def measure(name: str, repeat: int) -> dict[str, Any]:
    """Run one detector over the whole set in this process; returns predictions and costs."""
    rows = load_rows()
    rss_before = _rss_kib()
    started = time.perf_counter()
    detect = build(name)
    # The first pass loads what the detector builds lazily (lingua loads a model the first time a
    # text needs it, not when the detector is built), so it is timed whole.
    predictions = [detect(r["text"], r["hint"] or None) for r in rows]
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(repeat):
        for r in rows:
            detect(r["text"], r["hint"] or None)
    per_text_us = (time.perf_counter() - started) / (repeat * len(rows)) * 1e6
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "name": name,
        "predictions": predictions,
        "load_s": load_s,
        "per_text_us": per_text_us,
        "memory_mib": max(0, peak_kib - rss_before) / 1024,
    }


def _cell(ok: int, total: int) -> str:
    return f"{ok}/{total} {100 * ok / total:5.1f}%" if total else "-"


def report(rows: list[dict[str, str]], results: list[dict[str, Any]]) -> str:
    classes = sorted({r["class"] for r in rows}, key=lambda c: (c.split("-")[0], c))
    groups: list[tuple[str, Callable[[dict[str, str]], bool]]] = [
        (c, lambda r, c=c: r["class"] == c) for c in classes
    ]
    groups += [
        ("tune set", lambda r: r["split"] == "tune"),
        ("held-out set", lambda r: r["split"] == "holdout"),
        ("overall", lambda r: True),
    ]
    header = ["class", "texts"] + [res["name"] for res in results]
    table = [header]
    for label, member in groups:
        idx = [i for i, r in enumerate(rows) if member(r)]
        line = [label, str(len(idx))]
        for res in results:
            ok = sum(1 for i in idx if res["predictions"][i] == rows[i]["expected"])
            line.append(_cell(ok, len(idx)))
        table.append(line)
    table.append(["time per text", ""] + [f"{res['per_text_us']:.1f} µs" for res in results])
    table.append(["first pass (loading)", ""] + [f"{res['load_s'] * 1000:.0f} ms" for res in results])
    table.append(["memory (RSS added)", ""] + [f"{res['memory_mib']:.0f} MiB" for res in results])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    out = []
    for n, row in enumerate(table):
        out.append(
            "  ".join(
                cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
            )
        )
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def misses(rows: list[dict[str, str]], result: dict[str, Any]) -> str:
    lines = [f"{result['name']} misses:"]
    for row, got in zip(rows, result["predictions"], strict=True):
        if got != row["expected"]:
            lines.append(
                f"  [{row['split']}/{row['class']}] expected {row['expected']}, got {got}: {row['text']}"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detectors", default=",".join(DETECTORS))
    parser.add_argument("--repeat", type=int, default=5, help="timed passes over the set")
    parser.add_argument("--misses", action="store_true", help="list every wrong answer")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.repeat)))
        return
    rows = load_rows()
    results = []
    for name in args.detectors.split(","):
        out = subprocess.run(
            [sys.executable, __file__, "--child", name, "--repeat", str(args.repeat)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        if out.returncode != 0:
            # py3langid is only in the `bench` extra: say so and measure the others.
            last = (out.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"{name}: not measured ({last}); pip install -e '.[bench]' installs py3langid")
            continue
        results.append(json.loads(out.stdout))
    print(f"Language detection on {len(rows)} labelled texts (bench/data), one child process per detector")
    print(report(rows, results))
    if args.misses:
        for result in results:
            print()
            print(misses(rows, result))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
