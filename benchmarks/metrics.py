"""Reading a server's Prometheus ``/metrics`` to count gRPC answers by status code.

h2load sees gRPC calls as HTTP/2 requests that all answer HTTP 200: the gRPC status travels
in the trailers, which it does not read. ferry counts every request by protocol and status
(issue 4, item 9), so the harness scrapes that counter before and after a gRPC load run and
counts every status other than OK as an error.
"""

from __future__ import annotations


def grpc_status_counts(text: str) -> dict[str, float] | None:
    """Requests by gRPC status from the first counter labelled with ``protocol`` and ``status``.

    Returns:
        ``{"OK": n, "RESOURCE_EXHAUSTED": m, ...}`` for ``protocol="grpc"`` samples (empty when
        no gRPC request was counted yet), or None when no such counter exists.
    """
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        if family.type != "counter":
            continue
        samples = [s for s in family.samples
                   if s.name.endswith("_total") and {"protocol", "status"} <= s.labels.keys()]
        if not samples:
            continue
        counts: dict[str, float] = {}
        for sample in samples:
            if sample.labels["protocol"] == "grpc":
                status = sample.labels["status"]
                counts[status] = counts.get(status, 0.0) + float(sample.value)
        return counts
    return None


def non_ok(before: dict[str, float], after: dict[str, float]) -> tuple[int, int]:
    """(answers not OK, answers OK) counted between two scrapes."""
    statuses = set(before) | set(after)
    delta = {s: after.get(s, 0.0) - before.get(s, 0.0) for s in statuses}
    ok = sum(v for s, v in delta.items() if s.upper() in ("OK", "0"))
    bad = sum(v for s, v in delta.items() if s.upper() not in ("OK", "0"))
    return int(bad), int(ok)
