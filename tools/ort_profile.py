#!/usr/bin/env python3
"""Where a session's time went, from onnxruntime's profiles.

    LOGIT_LENS_ORT_PROFILE=/tmp/prof node dist/bench/real.js --child-ours <checkpoint> <inputs> auto auto
    python3 tools/ort_profile.py /tmp/prof [--run longest|first|N] [--top 15] [--by op|node]

Each session writes one JSON file when it is released (src/sidecar/runtime/ort.ts, PROFILE_ENV).
For every file this prints the duration of each run, then, for the chosen run, the kernel time
per operator type (or per node, with the calls inside a Scan or If counted together), its share
of the run, and the output shape it last had.
"""
import argparse
import collections
import glob
import json
import os


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("--run", default="longest", help="longest (default), first, or a run's index")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--by", choices=["op", "node"], default="op")
    args = ap.parse_args()
    files = sorted(glob.glob(os.path.join(args.folder, "*.json")))
    if not files:
        raise SystemExit(f"{args.folder}: no profiles; run with LOGIT_LENS_ORT_PROFILE={args.folder} first")
    for file in files:
        events = json.load(open(file))
        runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
        print(f"{os.path.basename(file)}: {len(runs)} runs, ms: {[round(r['dur'] / 1000) for r in runs]}")
        if not runs:
            continue
        run = max(runs, key=lambda r: r["dur"]) if args.run == "longest" else runs[0] if args.run == "first" else runs[int(args.run)]
        start, end = run["ts"], run["ts"] + run["dur"]
        total = collections.Counter()
        calls = collections.Counter()
        shape = {}
        for e in events:
            if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time") or not start <= e["ts"] <= end:
                continue
            op = e["args"].get("op_name", "?")
            key = op if args.by == "op" else f"{op} {e['name'][: -len('_kernel_time')]}"
            total[key] += e["dur"]
            calls[key] += 1
            shape[key] = e["args"].get("output_type_shape")
        print(f"  run of {run['dur'] / 1000:.0f} ms (Scan and If include the nodes inside them):")
        for key, us in total.most_common(args.top):
            print(f"  {us / 1000:9.1f} ms {100 * us / run['dur']:5.1f}%  {calls[key]:5d}x  {key}  {json.dumps(shape[key])[:120]}")


if __name__ == "__main__":
    main()
