"""What reading and checking a large manifest costs: time and peak memory, per ``check_audio`` mode.

Writes a JSONL manifest of ``--lines`` lines (default one million) pointing at a handful of real
small WAV files (each line a distinct entry, with its ``duration``), then, each in a fresh process
so peak memory is its own, reads it (``scan_manifests``) and checks it (``checked_entries``) with:

* ``none``: entries with a duration are not opened (every line here has one);
* ``quick``: each entry's header and first and last frames (the default);
* ``full``: each entry decoded (off by default at a million lines: see ``--modes``).

The per-file checks are timed on the first ``--probe-lines`` entries and projected to all lines
(printed as such): at ~0.5 ms per file a million-line quick check takes ~10 minutes, which the
benchmark need not spend to show. The files sit in the page cache, so the times are CPU only; on
network storage add a round trip per file. Peak memory is the process's ru_maxrss (entries of all
lines held, whichever mode).

    python benchmarks/manifest_scale.py                 # 1,000,000 lines: none, quick
    python benchmarks/manifest_scale.py --smoke         # 10,000 lines, every mode, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MODES = ("none", "quick", "full")
FILES = 4  # distinct audio files the lines point at


def write_corpus(folder: Path, lines: int, files: int = FILES) -> Path:
    """``files`` short WAV files (0.5-0.8 s tones) and a manifest of ``lines`` entries cycling over them."""
    import numpy as np
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    durations = []
    for k in range(files):
        samples = 8000 + 1600 * k
        tone = 0.2 * np.sin(2 * np.pi * (220 + 110 * k) * np.arange(samples) / 16000)
        sf.write(str(folder / f"clip{k}.wav"), tone.astype(np.float32), 16000)
        durations.append(samples / 16000)
    manifest = folder / f"manifest-{lines}.jsonl"
    with open(manifest, "w", encoding="utf-8") as handle:
        for i in range(lines):
            k = i % files
            handle.write(json.dumps({"audio": f"clip{k}.wav", "text": f"utterance number {i}",
                                     "duration": durations[k], "speaker": f"s{i % 100}"}) + "\n")
    return manifest


def measure(manifest: Path, mode: str, probe_lines: int) -> dict[str, Any]:
    """(In a child process.) Scan the manifest, then check it in ``mode``; times and peak memory."""
    from nue_core.data.manifest import scan_manifests
    from nue_core.data.validate import checked_entries

    base = _rss_mb()
    started = time.perf_counter()
    scanned = scan_manifests([manifest])
    scan_s = time.perf_counter() - started
    after_scan = _rss_mb()
    entries = scanned.entries
    sample = entries if mode == "none" else entries[:probe_lines]  # per-file checks: timed on a sample
    started = time.perf_counter()
    good, _ = checked_entries(sample, str(manifest), 16.0, decode_rate=16000 if mode == "full" else None,
                              probe=mode != "none")
    check_s = time.perf_counter() - started
    assert len(good) == len(sample)
    return {"mode": mode, "lines": len(entries), "scan_s": scan_s, "checked": len(sample), "check_s": check_s,
            "check_projected_s": check_s * len(entries) / max(len(sample), 1), "rss_base_mb": base,
            "rss_after_scan_mb": after_scan, "rss_peak_mb": _rss_mb()}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_child(manifest: Path, mode: str, probe_lines: int) -> dict[str, Any]:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--manifest", str(manifest),
                          "--probe-lines", str(probe_lines)], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'mode':<6} {'lines':>9} {'scan s':>8} {'check s':>9} {'checked':>9} {'check, all lines':>17} "
             f"{'RSS before':>11} {'after scan':>11} {'peak':>8}"]
    for r in rows:
        projected = "" if r["checked"] == r["lines"] else " (proj.)"
        lines.append(f"{r['mode']:<6} {r['lines']:>9,} {r['scan_s']:>8.1f} {r['check_s']:>9.2f} {r['checked']:>9,} "
                     f"{r['check_projected_s']:>9.1f} s{projected:<7} {r['rss_base_mb']:>8.0f} MB "
                     f"{r['rss_after_scan_mb']:>8.0f} MB {r['rss_peak_mb']:>5.0f} MB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--modes", default="none,quick", help=f"comma list of {', '.join(MODES)}")
    parser.add_argument("--probe-lines", type=int, default=50_000, help="entries the per-file checks are timed on")
    parser.add_argument("--smoke", action="store_true", help="10,000 lines, every mode")
    parser.add_argument("--dir", type=Path, default=None, help="where to write the corpus (default: a temporary folder)")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--manifest", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.manifest, args.child, args.probe_lines)))
        return []
    lines, modes = (10_000, list(MODES)) if args.smoke else (args.lines, args.modes.split(","))
    probe = min(args.probe_lines, 2_000) if args.smoke else args.probe_lines
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(sorted(unknown))}; choose from {', '.join(MODES)}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.dir or Path(tmp)
        started = time.perf_counter()
        manifest = write_corpus(folder, lines)
        print(f"wrote {lines:,} lines ({manifest.stat().st_size / 2**20:.0f} MiB) pointing at "
              f"{FILES} WAV files in {time.perf_counter() - started:.1f} s", flush=True)
        rows = [run_child(manifest, mode, probe) for mode in modes]
    # Only now: decode_common imports torch, and a child forked from a large parent reports the
    # parent's peak as its own ru_maxrss (Linux keeps the high-water mark across exec).
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from decode_common import machine_line

    print(f"{machine_line()}; load average {os.getloadavg()[0]:.1f}\n{report(rows)}")
    return rows


if __name__ == "__main__":
    main()
