"""Plots the resident memory of each backup sampled by benches/rss-timeline.sh.

usage: plot-rss-timeline.py LOG OUT.png [TITLE]

One line per process (pid), x: seconds since that process's first sample, y: MiB.
Prints each process's sample count, duration, peak and the peak of its first and
second half, which is what says plateau (similar) or climb (second half higher).
"""
import sys
from collections import defaultdict


def read_samples(path):
    samples = defaultdict(list)
    for line in open(path):
        parts = line.split()
        if len(parts) != 3:
            continue
        when, pid, kib = float(parts[0]), parts[1], int(parts[2])
        samples[pid].append((when, kib / 1024))
    return samples


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    log, out = sys.argv[1], sys.argv[2]
    title = sys.argv[3] if len(sys.argv) == 4 else "ingest-backup backup: resident memory"
    samples = read_samples(log)
    if not samples:
        sys.exit(f"{log}: no samples (was a backup running while rss-timeline.sh sampled?)")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots()
    for pid, rows in samples.items():
        start = rows[0][0]
        seconds = [when - start for when, _ in rows]
        mib = [m for _, m in rows]
        half = len(mib) // 2
        print(f"pid {pid}: {len(rows)} samples over {seconds[-1]:.0f} s, peak {max(mib):.0f} MiB, "
              f"first half peak {max(mib[:half] or mib):.0f} MiB, second half peak {max(mib[half:]):.0f} MiB")
        axes.plot(seconds, mib, label=f"pid {pid}")
    axes.set_xlabel("seconds since start")
    axes.set_ylabel("resident memory (MiB)")
    axes.set_ylim(bottom=0)
    axes.set_title(title)
    figure.savefig(out, dpi=100)


if __name__ == "__main__":
    main()
