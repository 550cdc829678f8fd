"""Solves the planning instances `purser-bench --phase crosscheck` wrote, exactly, with HiGHS (through scipy),
and compares Purser's plans with the optimum. A developer tool: the product, its build and CI do not use it.

Each instance file holds the assignment Purser's planner solves (see Planner.problemDocument): requests with
their tokens and options (family, latest-start boundary, exact cost), and families with cumulative limits.
The integer program: each request takes at most one option; at every boundary of every family, the requests
and the tokens of the options due by it fit the family's limits there. Placing the most requests comes first
(as in Purser), then the least cost.
"""
import contextlib
import glob
import json
import os
import sys
import time

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix


@contextlib.contextmanager
def quiet():
    """HiGHS writes progress to standard output from C++; keep it out of the table."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


def solve(problem, time_limit):
    requests, families = problem["requests"], problem["families"]
    columns = []  # (request, family, boundary, cost)
    for index, request in enumerate(requests):
        for family, boundary, cost in request["options"]:
            columns.append((index, family, boundary, cost))
    n = len(columns)
    unplaced = len(requests)  # one slack per request
    rows, cols, vals, lower, upper = [], [], [], [], []
    # Each request: its options plus its unplaced slack sum to one.
    for position, (request, _, _, _) in enumerate(columns):
        rows.append(request); cols.append(position); vals.append(1.0)
    for request in range(len(requests)):
        rows.append(request); cols.append(n + request); vals.append(1.0)
    lower += [1.0] * len(requests); upper += [1.0] * len(requests)
    row = len(requests)
    # Prefix rows: requests and tokens due by each boundary of each family.
    by_family = {}
    for position, (request, family, boundary, _) in enumerate(columns):
        by_family.setdefault(family, []).append((boundary, position, requests[request]["tokens"]))
    for family, entries in by_family.items():
        limits = families[family]
        for boundary in range(len(limits["boundaries"])):
            due = [(position, tokens) for (b, position, tokens) in entries if b <= boundary]
            if not due:
                continue
            if len(due) > limits["requests"][boundary]:
                for position, _ in due:
                    rows.append(row); cols.append(position); vals.append(1.0)
                lower.append(-np.inf); upper.append(float(limits["requests"][boundary])); row += 1
            if sum(tokens for _, tokens in due) > limits["tokens"][boundary]:
                for position, tokens in due:
                    rows.append(row); cols.append(position); vals.append(float(tokens))
                lower.append(-np.inf); upper.append(float(limits["tokens"][boundary])); row += 1
    matrix = coo_matrix((vals, (rows, cols)), shape=(row, n + unplaced)).tocsr()
    integrality = np.ones(n + unplaced)
    bounds = Bounds(np.zeros(n + unplaced), np.ones(n + unplaced))
    # First the fewest unplaced, then the least cost with no more unplaced than that.
    first = milp(c=np.concatenate([np.zeros(n), np.ones(unplaced)]), constraints=[LinearConstraint(matrix, lower, upper)],
                 integrality=integrality, bounds=bounds, options={"time_limit": time_limit})
    fewest = round(first.fun)
    placed_row = coo_matrix((np.ones(unplaced), (np.zeros(unplaced, dtype=int), np.arange(n, n + unplaced))), shape=(1, n + unplaced)).tocsr()
    second = milp(c=np.concatenate([np.array([c for (_, _, _, c) in columns], dtype=float), np.zeros(unplaced)]),
                  constraints=[LinearConstraint(matrix, lower, upper), LinearConstraint(placed_row, -np.inf, fewest + 0.5)],
                  integrality=integrality, bounds=bounds, options={"time_limit": time_limit, "mip_rel_gap": 1e-7})
    return len(requests) - fewest, second


def main():
    pattern = sys.argv[1] if len(sys.argv) > 1 else "/tmp/purser-bench/crosscheck/instance-*.json"
    time_limit = float(sys.argv[2]) if len(sys.argv) > 2 else 120
    files = sorted(glob.glob(pattern), key=lambda path: (int(path.split("-")[-2]), int(path.split("-")[-1].split(".")[0])))
    print(f"{'size':>7} {'seed':>4}  {'purser':>14} {'HiGHS optimum':>14} {'purser/opt':>11} {'bound/opt':>10} {'placed':>9}  {'HiGHS':>7}")
    worst = 1.0
    for path in files:
        instance = json.load(open(path))
        started = time.time()
        with quiet():
            placed, result = solve(instance["problem"], time_limit)
        elapsed = time.time() - started
        purser = instance["purser"]
        optimum = result.fun
        proven = result.status == 0
        # With a time limit, HiGHS's own dual bound is what is proven; compare against it.
        best_bound = getattr(result, "mip_dual_bound", optimum) if not proven else optimum
        ratio = purser["cost_pico"] / optimum
        worst = max(worst, purser["cost_pico"] / best_bound)
        note = "" if proven else f" (not proven in {time_limit:.0f}s; dual bound {best_bound:.0f})"
        print(f"{instance['size']:>7} {instance['seed']:>4}  {purser['cost_pico']:>14} {optimum:>14.0f} {ratio:>11.5f} "
              f"{purser['lower_bound_pico'] / optimum:>10.5f} {purser['placed']}/{placed:<4}  {elapsed:>6.1f}s{note}")
        if purser["placed"] != placed:
            print(f"        Purser placed {purser['placed']}, the optimum places {placed}")
        if purser["lower_bound_pico"] > optimum * (1 + 1e-9):
            print("        Purser's lower bound is above the optimum: the bound is wrong")
    print(f"worst purser/optimum: {worst:.5f}")


if __name__ == "__main__":
    main()
