"""pytest-benchmark JSON -> markdown comparison table + PNG chart.

    python benchmarks/report.py run.json --out results/

Ratios are only taken between entries of the same run and the same (model, batch) group, so
they compare backends under identical conditions; nothing is compared across runs. Entries of
``bench_models.py`` / ``bench_pipeline.py`` carry ``extra_info`` (model, batch, backend,
images_per_round); other entries are listed by name and mean time only.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: the backend every other one is compared with, per kind of entry
BASELINES = ("paddle", "native")
MODEL_ORDER = {"det": 0, "rec": 1, "cls": 2, "pipeline": 3}


@dataclass(frozen=True)
class Row:
    model: str
    batch: int
    backend: str
    mean_s: float
    median_s: float
    stddev_s: float
    rounds: int
    images_per_round: int

    @property
    def images_per_s(self) -> float:
        return self.images_per_round / self.mean_s if self.mean_s > 0 else 0.0


def load(path: str | Path) -> dict[str, Any]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "benchmarks" not in data:
        raise ValueError(f"{path} is not a pytest-benchmark JSON file (no 'benchmarks' list)")
    return data


def rows(data: dict[str, Any]) -> tuple[list[Row], list[dict[str, Any]]]:
    """(comparable rows, other entries) of one run."""
    found, other = [], []
    for bench in data["benchmarks"]:
        info, stats = bench.get("extra_info") or {}, bench["stats"]
        if info.get("peer"):  # bench_peer.py: its own tables (peer_report)
            continue
        if not {"model", "batch", "backend"} <= set(info):
            other.append(bench)
            continue
        found.append(
            Row(
                model=str(info["model"]),
                batch=int(info["batch"]),
                backend=str(info["backend"]),
                mean_s=float(stats["mean"]),
                median_s=float(stats["median"]),
                stddev_s=float(stats["stddev"]),
                rounds=int(stats["rounds"]),
                images_per_round=int(info.get("images_per_round", info["batch"])),
            )
        )
    found.sort(
        key=lambda r: (MODEL_ORDER.get(r.model, 9), r.model, r.batch, r.backend not in BASELINES)
    )
    return found, other


def baseline_of(group: Sequence[Row]) -> Row | None:
    for name in BASELINES:
        for row in group:
            if row.backend == name:
                return row
    return None


def groups(found: Sequence[Row]) -> dict[tuple[str, int], list[Row]]:
    out: dict[tuple[str, int], list[Row]] = {}
    for row in found:
        out.setdefault((row.model, row.batch), []).append(row)
    return out


def not_measured(data: dict[str, Any]) -> dict[str, str]:
    """backend -> why it was not measured (recorded by the benchmarks in extra_info)."""
    reasons: dict[str, str] = {}
    for bench in data["benchmarks"]:
        reasons.update((bench.get("extra_info") or {}).get("skipped_backends") or {})
    return reasons


def markdown(data: dict[str, Any]) -> str:
    found, other = rows(data)
    machine = data.get("machine_info") or {}
    commit = data.get("commit_info") or {}
    cpu = (machine.get("cpu") or {}).get("brand_raw") or machine.get("processor") or "?"
    lines = [
        "# Benchmark comparison",
        "",
        f"Run {data.get('datetime', '?')}, commit {str(commit.get('id', '?'))[:10]}"
        f"{' (dirty)' if commit.get('dirty') else ''}; {machine.get('node', '?')}, {cpu}, "
        f"Python {machine.get('python_version', '?')}.",
        "Speedup = baseline mean / mean, within one (model, batch) group of this run; baseline "
        "is native Paddle.",
        "",
    ]
    if found:
        lines += [
            "| model | batch | backend | mean ms | median ms | ± std ms | rounds | images/s "
            "| speedup |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        for group in groups(found).values():
            base = baseline_of(group)
            for row in group:
                speedup = f"{base.mean_s / row.mean_s:.2f}x" if base and row.mean_s > 0 else "-"
                lines.append(
                    f"| {row.model} | {row.batch} | {row.backend} | {row.mean_s * 1e3:.2f} "
                    f"| {row.median_s * 1e3:.2f} | {row.stddev_s * 1e3:.2f} | {row.rounds} "
                    f"| {row.images_per_s:.1f} | {speedup} |"
                )
    skipped = not_measured(data)
    if skipped:
        lines += ["", "Not measured in this run:"]
        lines += [f"- **{backend}**: {reason}" for backend, reason in sorted(skipped.items())]
    pipeline_backends = {
        str(b["extra_info"].get("backend")): b["extra_info"]["backends"]
        for b in data["benchmarks"]
        if (b.get("extra_info") or {}).get("backends")
    }
    for variant, per_model in pipeline_backends.items():
        lines += ["", f"Backends behind pipeline entry `{variant}`:"]
        lines += [f"- {name}: {why}" for name, why in sorted(per_model.items())]
    peer = [b["extra_info"] for b in data["benchmarks"] if (b.get("extra_info") or {}).get("peer")]
    if peer:
        from peer_report import summary_lines

        lines += ["", "## Ours vs PaddleOCR's own engine='onnxruntime' vs native Paddle"]
        lines += summary_lines(peer)
    if other:
        lines += ["", "Other entries:", "", "| name | mean ms | rounds |", "|---|---:|---:|"]
        for bench in other:
            stats = bench["stats"]
            lines.append(f"| {bench['name']} | {stats['mean'] * 1e3:.3f} | {stats['rounds']} |")
    return "\n".join(lines) + "\n"


def chart(data: dict[str, Any], path: str | Path) -> Path | None:
    """Images/s per backend, one panel per model, batch sizes on the x axis; None if no rows."""
    found, _ = rows(data)
    if not found:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r.model for r in found))
    fig, axes = plt.subplots(
        1, len(models), figsize=(4.2 * len(models), 3.8), squeeze=False, constrained_layout=True
    )
    for ax, model in zip(axes[0], models, strict=True):
        subset = [r for r in found if r.model == model]
        batches = sorted({r.batch for r in subset})
        backends = list(dict.fromkeys(r.backend for r in subset))
        width = 0.8 / len(backends)
        for i, backend in enumerate(backends):
            by_batch = {r.batch: r.images_per_s for r in subset if r.backend == backend}
            xs = [j + (i - (len(backends) - 1) / 2) * width for j in range(len(batches))]
            ax.bar(xs, [by_batch.get(b, 0.0) for b in batches], width, label=backend)
        ax.set_xticks(range(len(batches)), [str(b) for b in batches])
        ax.set_xlabel("images per round" if model == "pipeline" else "batch size")
        ax.set_ylabel("images/s")
        ax.set_title(model)
        ax.legend(fontsize="small")
    fig.suptitle("Throughput by backend (same run)")
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="pytest-benchmark JSON (--benchmark-json)")
    parser.add_argument("--out", type=Path, required=True, help="directory for report.md/.png")
    args = parser.parse_args(argv)
    try:
        data = load(args.run)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    text = markdown(data)
    (args.out / "report.md").write_text(text, encoding="utf-8")
    png = chart(data, args.out / "report.png")
    sys.stdout.write(text)
    print(f"\nwrote {args.out / 'report.md'}" + (f" and {png}" if png else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
