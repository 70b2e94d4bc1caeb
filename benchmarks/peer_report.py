"""Ratio tables of ``bench_peer.py`` entries (ours vs PaddleOCR's own ONNX Runtime engine vs
native Paddle), from its in-process results or from its pytest-benchmark JSON (``report.py``).

Ratios are images/s of one variant over another's, taken only within one load setting of one
run; a ratio over several rounds is total images over total seconds of each variant.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

STOCK = "stock-onnxruntime"
VARIANTS = (STOCK, "ours", "native")
TARGET = 1.2  # issue 22: ours >= 1.2x stock engine="onnxruntime" images/s
STAGES = ("det", "orientation", "rec")


def _rate(entries: Iterable[Mapping[str, Any]]) -> float:
    entries = list(entries)
    seconds = sum(e["seconds"] for e in entries)
    return sum(e["images_per_round"] for e in entries) / seconds if seconds else 0.0


def _x(ratio: float) -> str:
    """A ratio, or "n/a" where the variant did not run (``PADDLEOCR_TRT_BENCH_VARIANTS``)."""
    return f"{ratio:.2f}x" if ratio else "n/a"


def _pick(entries: list[Mapping[str, Any]], **match: Any) -> list[Mapping[str, Any]]:
    return [e for e in entries if all(e.get(k) == v for k, v in match.items())]


def ratios(entries: list[Mapping[str, Any]], load: str) -> dict[str, Any]:
    """ours/stock and ours/native, whole list and per page class, for one load setting."""
    mine = _pick(entries, load=load)
    rounds = sorted({e["round"] for e in mine})
    scopes = list(dict.fromkeys(e["page_class"] for e in mine))
    out: dict[str, Any] = {"rounds": rounds, "scopes": {}}
    for scope in scopes:
        rate = {v: _rate(_pick(mine, page_class=scope, backend=v)) for v in VARIANTS}
        per_round = {
            r: {v: _rate(_pick(mine, page_class=scope, backend=v, round=r)) for v in VARIANTS}
            for r in rounds
        }
        out["scopes"][scope] = {
            "rate": rate,
            "per_round": per_round,
            "vs_stock": rate["ours"] / rate[STOCK] if rate[STOCK] else 0.0,
            "vs_native": rate["ours"] / rate["native"] if rate["native"] else 0.0,
            "worst_round_vs_stock": min(
                (p["ours"] / p[STOCK] for p in per_round.values() if p[STOCK]), default=0.0
            ),
        }
    return out


def _stage_text(entries: list[Mapping[str, Any]]) -> str:
    images = sum(e["images_per_round"] for e in entries) or 1
    totals = {s: 0.0 for s in STAGES}
    for e in entries:
        for stage, seconds in (e.get("engine_seconds_per_stage") or {}).items():
            totals[stage] = totals.get(stage, 0.0) + seconds
    return " / ".join(f"{1000 * totals[s] / images:.0f}" for s in STAGES)


def summary_lines(entries: list[Mapping[str, Any]]) -> list[str]:
    entries = [e for e in entries if e.get("peer")]
    lines: list[str] = []
    verdicts: list[str] = []
    for load in dict.fromkeys(e["load"] for e in entries):
        table = ratios(entries, load)
        mine = _pick(entries, load=load)
        burners = mine[0].get("burners", 0)
        cores = mine[0].get("cores", "?")
        lines += [
            "",
            f"### {load}: {burners} CPU-burning processes beside the benchmark, {cores} cores",
            "",
            "All pages, one predict(list) per entry:",
            "",
            "| variant | "
            + " | ".join(f"images/s round {r}" for r in table["rounds"])
            + " | images/s all rounds | CPU s/image | engine ms/image det / orientation / rec |",
            "|---|" + "---:|" * (len(table["rounds"]) + 3),
        ]
        whole = table["scopes"].get("all")
        for v in VARIANTS:
            picked = _pick(mine, page_class="all", backend=v)
            if not picked or whole is None:
                continue
            images = sum(e["images_per_round"] for e in picked)
            cpu = sum(e["cpu_s_per_image"] * e["images_per_round"] for e in picked) / images
            per_round = " | ".join(f"{whole['per_round'][r][v]:.3f}" for r in table["rounds"])
            lines.append(
                f"| {v} | {per_round} | {whole['rate'][v]:.3f} | {cpu:.3f} | "
                f"{_stage_text(picked)} |"
            )
        if whole is not None:
            per_round = ", ".join(
                f"round {r} {p['ours'] / p[STOCK]:.2f}x"
                for r, p in whole["per_round"].items()
                if p[STOCK]
            )
            lines += [
                "",
                f"ours / stock engine='onnxruntime': {whole['vs_stock']:.2f}x ({per_round}); "
                f"ours / native Paddle: {_x(whole['vs_native'])}",
            ]
        lines += [
            "",
            "Per page class (its pages repeated to 4 images per call):",
            "",
            "| page class | stock images/s | ours images/s | native images/s | ours/stock "
            "| worst round ours/stock | ours/native |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for scope, row in table["scopes"].items():
            if scope == "all":
                continue
            rate = row["rate"]
            native = f"{rate['native']:.3f}" if rate["native"] else "n/a"
            lines.append(
                f"| {scope} | {rate[STOCK]:.3f} | {rate['ours']:.3f} | {native} "
                f"| {row['vs_stock']:.2f}x | {row['worst_round_vs_stock']:.2f}x "
                f"| {_x(row['vs_native'])} |"
            )
        classes = {s: r for s, r in table["scopes"].items() if s != "all"}
        if whole is not None and classes:
            slowest = min(classes, key=lambda s: classes[s]["vs_stock"])
            ok = whole["vs_stock"] >= TARGET and classes[slowest]["vs_stock"] >= 1.0
            verdicts.append(
                f"{load}: ours/stock {whole['vs_stock']:.2f}x (target >= {TARGET}x), slowest "
                f"page class {slowest} {classes[slowest]['vs_stock']:.2f}x (target >= 1.00x): "
                + ("MET" if ok else "NOT MET")
            )
    if verdicts:
        lines += ["", "Verdict:"] + [f"- {v}" for v in verdicts]
    return lines
