"""Parses a sidecar's /stats/prometheus page as a scraper would (prometheus_client's text parser) and checks it.

Usage: prometheus_check.py URL EXPECTED_REQUESTS HCM_PREFIX CLUSTER
Checks: every family has a TYPE (the parser calls a family without one "unknown") and a HELP line; the
histogram families Envoy has (http.downstream_rq_time, http.downstream_cx_length_ms, cluster.upstream_rq_time,
cluster.upstream_cx_connect_ms, cluster.upstream_cx_length_ms) are histograms with, per label set, Envoy's
19 bucket bounds plus +Inf in ascending order, non-decreasing counts, +Inf equal to _count, and a _sum; the
request histograms counted EXPECTED_REQUESTS requests. Prints one line per failure; exits 1 if any.
"""
import math
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

ENVOY_BOUNDS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000,
                1800000, 3600000, math.inf]


def main():
    url, expected, prefix, cluster = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    failures = []
    # Every "# TYPE" line must come with a "# HELP" line for the same metric.
    helped = {line.split(" ")[2] for line in text.splitlines() if line.startswith("# HELP ")}
    typed = [line.split(" ")[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    failures += [f"{name} has a TYPE line but no HELP line" for name in typed if name not in helped]
    families = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = family
        if family.type == "unknown":
            failures.append(f"family {family.name} has no TYPE")
        # (The parser names a counter family without its _total suffix, so HELP is checked by its text.)
        if not family.documentation:
            failures.append(f"family {family.name} has no HELP")
    if len(families) < 10:
        failures.append(f"only {len(families)} families parsed")

    hcm = {"envoy_http_conn_manager_prefix": prefix}
    cl = {"envoy_cluster_name": cluster}
    wanted = {
        "envoy_http_downstream_rq_time": (hcm, expected),
        "envoy_http_downstream_cx_length_ms": (hcm, None),
        "envoy_cluster_upstream_rq_time": (cl, expected),
        "envoy_cluster_upstream_cx_connect_ms": (cl, None),
        "envoy_cluster_upstream_cx_length_ms": (cl, None),
    }
    for name, (labels, count) in wanted.items():
        family = families.get(name)
        if family is None:
            failures.append(f"histogram family {name} missing")
            continue
        if family.type != "histogram":
            failures.append(f"{name} has type {family.type}, not histogram")
            continue
        mine = [s for s in family.samples if all(s.labels.get(k) == v for k, v in labels.items())]
        buckets = [s for s in mine if s.name == name + "_bucket"]
        sums = [s.value for s in mine if s.name == name + "_sum"]
        counts = [s.value for s in mine if s.name == name + "_count"]
        bounds = [float(s.labels["le"]) for s in buckets]
        values = [s.value for s in buckets]
        if bounds != ENVOY_BOUNDS:
            failures.append(f"{name}{labels}: bucket bounds {bounds}")
        if values != sorted(values):
            failures.append(f"{name}{labels}: bucket counts not cumulative: {values}")
        if len(sums) != 1 or len(counts) != 1:
            failures.append(f"{name}{labels}: _sum {sums} / _count {counts}")
            continue
        if not values or values[-1] != counts[0]:
            failures.append(f"{name}{labels}: +Inf bucket {values[-1:]} != _count {counts[0]}")
        if counts[0] < 1:
            failures.append(f"{name}{labels}: nothing recorded")
        if count is not None and counts[0] != count:
            failures.append(f"{name}{labels}: _count {counts[0]}, expected {count}")
        print(f"{name}{labels}: count {counts[0]:g}, sum {sums[0]:g} ms, le=5 {values[2]:g}")
    for f in failures:
        print("FAIL " + f)
    print(f"{len(families)} families parsed, {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
