"""What ``place`` (``wasmlet.plan``) costs, fresh and in the steady state.

Every host of a lattice computes the placement itself, on every change and
every agent tick, so its cost bounds how large a lattice can be. For lattices
of growing size (hosts in three zones, 8Gi and 200 pods each; apps of 3
replicas, 128Mi each, three priorities, half of them spread across zones with
maxSkew 1), it prints the time of a fresh placement (nothing ran before: a
lattice starting) and of the steady state (the previous result given back:
what every tick computes), the median of ``--reps`` runs. Pure Python, no
servers; nothing is asserted.

    .venv/bin/python bench/placement.py [--reps 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

from wasmlet.plan import ZONE_LABEL, Node, Placement, SpreadConstraint, Workload, place

SIZES = [(3, 20), (10, 100), (50, 500), (100, 1000)]


def lattice(hosts: int, apps: int) -> tuple[list[Workload], list[Node]]:
    nodes = [Node(name=f"h{i:03d}", labels={ZONE_LABEL: "abc"[i % 3]}, memory=8 << 30, pods=200)
             for i in range(hosts)]
    spread = (SpreadConstraint(max_skew=1, topology_key=ZONE_LABEL),)
    workloads = [Workload(name=f"app{i:04d}/c", memory=128 << 20, priority=i % 3,
                          placement=Placement(replicas=3, spread=spread if i % 2 else ()))
                 for i in range(apps)]
    return workloads, nodes


def timed(reps: int, run: object) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        run()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    print(f"{'hosts':>5} {'apps':>5} {'replicas':>8} {'fresh ms':>9} {'steady ms':>9}")
    for hosts, apps in SIZES:
        workloads, nodes = lattice(hosts, apps)
        result = place(workloads, nodes)
        fresh = timed(args.reps, lambda w=workloads, n=nodes: place(w, n))
        steady = timed(args.reps, lambda w=workloads, n=nodes, r=result: place(w, n, previous=r))
        placed = sum(len(h) for h in result.assignments.values())
        print(f"{hosts:>5} {apps:>5} {placed:>8} {fresh:>9.1f} {steady:>9.1f}")


if __name__ == "__main__":
    main()
