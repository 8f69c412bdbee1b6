#!/usr/bin/env python3
"""Helper of bench/profile.sh: turns a callgrind dump (and optionally a
`perf report --stdio` text) into one labelled Markdown section and puts it
into bench/profile_results.md (a section with the same label is replaced,
others are kept), with a summary table of all labels at the top.

Usage: profile_report.py RESULTS.md METRICS.json

METRICS.json holds: label, date, code, requests, customers, callgrind (path
of the dump), cpu (dict), perf (dict: status text and optional report path),
setup (text).

The callgrind format is parsed here rather than with callgrind_annotate
(3.19's self-cost list is wrong for dumps taken with callgrind_control
-z/-d: it gives all cost to clone). Self cost of a function = its cost
lines; inclusive = self + the inclusive cost of its calls to other functions
(recursion levels name'N are merged into name and calls to itself skipped).
"""
import json
import os
import re
import sys
from collections import defaultdict

TOP = 15


def parse_callgrind(path):
    names = {"ob": {}, "fl": {}, "fn": {}}
    kind_of = {"ob": "ob", "cob": "ob", "fl": "fl", "fi": "fl", "fe": "fl", "cfi": "fl",
               "cfl": "fl", "fn": "fn", "cfn": "fn"}
    self_cost = defaultdict(int)
    incl_calls = defaultdict(int)
    callers = defaultdict(lambda: defaultdict(int))
    obj_of = {}
    npos = 1
    summary = None
    ob = fn = None
    call_ob = call_fn = None
    pending_call = False

    def name(kind, rest):
        m = re.match(r"\((\d+)\)(?:\s+(.*))?$", rest)
        if not m:
            return rest.strip()
        if m.group(2) is not None:
            names[kind][m.group(1)] = m.group(2).strip()
        return names[kind].get(m.group(1), "?")

    def base(f):
        return re.sub(r"'\d+$", "", f)

    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                parts = line.split()
                cost = sum(int(x) for x in parts[npos:npos + 1]) if len(parts) > npos else 0
                if pending_call:
                    callee = (call_ob or ob, base(call_fn))
                    if callee != (ob, base(fn)):
                        incl_calls[(ob, base(fn))] += cost
                        callers[callee][(ob, base(fn))] += cost
                    pending_call = False
                    call_ob = call_fn = None
                else:
                    self_cost[(ob, base(fn))] += cost
                continue
            key, _, rest = line.partition("=")
            if key in kind_of and _:
                v = name(kind_of[key], rest)
                if key == "ob":
                    ob = v
                elif key == "fn":
                    fn = v
                    obj_of.setdefault((ob, base(fn)), ob)
                elif key == "cob":
                    call_ob = v
                elif key == "cfn":
                    call_fn = v
                continue
            if key == "calls":
                pending_call = True
                if call_fn is None:
                    call_fn = fn
                continue
            if line.startswith("positions:"):
                npos = len(line.split(":", 1)[1].split())
            elif line.startswith("summary:"):
                summary = int(line.split()[1])
            elif line.startswith("totals:") and summary is None:
                summary = int(line.split()[1])
    # The cost lines add up to "totals:" (a little above "summary:"); use
    # their sum so that the shares add up to 100%.
    total = sum(self_cost.values()) or (summary or 1)
    keys = set(self_cost) | set(incl_calls)
    incl = {k: self_cost[k] + incl_calls[k] for k in keys}
    return total, dict(self_cost), incl, callers


def short_obj(o):
    return os.path.basename(o or "?")


def fmt(n):
    return f"{n:,.0f}"


def table(rows, total, requests, value_name):
    out = [f"| # | {value_name} Ir/request | % of total | function | object |",
           "|---|---|---|---|---|"]
    for i, ((ob, fn), v) in enumerate(rows, 1):
        fn = fn.replace("|", "\\|")
        out.append(f"| {i} | {fmt(v / requests)} | {100 * v / total:.1f}% | `{fn}` | {short_obj(ob)} |")
    return out


def perf_table(path):
    rows = []
    with open(path, errors="replace") as f:
        for line in f:
            m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[([.kug])\]\s+(.*\S)", line)
            if m:  # drop the trailing IPC columns ("-  -") newer perf prints
                sym = re.sub(r"(\s+(-|[\d.]+%?))+$", "", m.group(4))
                rows.append((float(m.group(1)), m.group(2), sym))
    out = ["| # | samples % | object | symbol |", "|---|---|---|---|"]
    for i, (p, dso, sym) in enumerate(rows[:TOP], 1):
        sym = sym.replace("|", "\\|")
        out.append(f"| {i} | {p:.2f}% | {dso} | `{sym}` |")
    return out if rows else ["(perf report had no samples)"]


def perf_dso_line(path):
    rows = []
    with open(path, errors="replace") as f:
        for line in f:
            m = re.match(r"\s*([\d.]+)%\s+(\S+)", line)
            if m:
                rows.append(f"{m.group(2)} {float(m.group(1)):.1f}%")
    return "By object: " + ", ".join(rows[:8]) + "." if rows else ""


def section(m):
    req = m["requests"]
    total, self_cost, incl, callers = parse_callgrind(m["callgrind"])
    per_req = total / req
    lines = [f"## {m['label']}", "",
             f"<!-- summary: {json.dumps({'label': m['label'], 'date': m['date'], 'code': m['code'], 'ir_per_request': round(per_req), 'cpu': m['cpu']})} -->",
             "",
             f"{m['date']}; code: {m['code']}.", "",
             m["setup"], "",
             "### Instructions of the server process (callgrind)", "",
             "| measure | value |", "|---|---|",
             f"| Ir (all threads, zeroed after warm-up, dumped after the run) | {fmt(total)} |",
             f"| requests | {req} |",
             f"| **Ir per request** | **{fmt(per_req)}** |", ""]
    by_obj = defaultdict(int)
    for (ob, _), v in self_cost.items():
        by_obj[short_obj(ob)] += v
    lines += ["Self Ir by object:", "", "| object | Ir/request | % |", "|---|---|---|"]
    for ob, v in sorted(by_obj.items(), key=lambda kv: -kv[1]):
        if v / total >= 0.001:
            lines.append(f"| {ob} | {fmt(v / req)} | {100 * v / total:.1f}% |")
    lines += ["", f"Top {TOP} functions by inclusive Ir (thread entry points and their callers come first):", ""]
    lines += table(sorted(incl.items(), key=lambda kv: -kv[1])[:TOP], total, req, "inclusive")
    lines += ["", f"Top {TOP} functions by self Ir:", ""]
    lines += table(sorted(self_cost.items(), key=lambda kv: -kv[1])[:TOP], total, req, "self")
    lines += ["", "Where the top 5 self-cost functions are called from (inclusive Ir of the calls):", "",
              "| function | callers (Ir/request) |", "|---|---|"]
    for k, _ in sorted(self_cost.items(), key=lambda kv: -kv[1])[:5]:
        top = sorted(callers.get(k, {}).items(), key=lambda kv: -kv[1])[:3]
        who = ", ".join(f"`{fn}` [{short_obj(ob)}] {fmt(v / req)}" for (ob, fn), v in top) or "-"
        lines.append(f"| `{k[1]}` [{short_obj(k[0])}] | {who} |")
    own = [(k, v) for k, v in incl.items() if short_obj(k[0]) == "crm-server"]
    lines += ["", f"Top {TOP} crm-server functions by inclusive Ir:", ""]
    lines += table(sorted(own, key=lambda kv: -kv[1])[:TOP], total, req, "inclusive")
    cpu = m["cpu"]
    lines += ["", "### CPU time per request (no perf: utime+stime from /proc, 10 ms ticks, shared machine)", "",
              "| measure | µs/request |", "|---|---|",
              f"| wall time seen by the client | {cpu['wall_us']} |",
              f"| crm-server CPU | {cpu['server_us']} |",
              f"| PostgreSQL backends CPU (connections to {cpu['db']}) | {cpu['backend_us']} |", ""]
    lines += ["### PostgreSQL backend side (perf)", "", m["perf"]["status"], ""]
    if m["perf"].get("report"):
        dso = m["perf"].get("report_dso")
        if dso and os.path.exists(dso) and perf_dso_line(dso):
            lines += [perf_dso_line(dso), ""]
        lines += perf_table(m["perf"]["report"]) + [""]
    return lines


def main():
    out_path, metrics_path = sys.argv[1], sys.argv[2]
    with open(metrics_path) as f:
        m = json.load(f)
    new = section(m)
    sections, order = {}, []
    if os.path.exists(out_path):
        current = None
        with open(out_path) as f:
            for line in f.read().splitlines():
                if line.startswith("## "):
                    current = line[3:].strip()
                    order.append(current)
                    sections[current] = [line]
                elif current is not None:
                    sections[current].append(line)
    if m["label"] not in sections:
        order.append(m["label"])
    sections[m["label"]] = new
    summaries = []
    for label in order:
        for line in sections[label]:
            s = re.match(r"<!-- summary: (.*) -->$", line)
            if s:
                summaries.append(json.loads(s.group(1)))
    head = ["# Profile results", "",
            "Written by `bench/profile.sh LABEL` (issue 6): the profile GET hot path "
            "(`GET /v1/customers/{id}`) profiled with `valgrind --tool=callgrind` "
            "(instruction counts, repeatable on a shared machine), plus CPU time per request "
            "from /proc and, where perf works, the PostgreSQL backend side. One section per "
            "label; running a label again replaces its section.", "",
            "Reading notes: valgrind counts every iteration of a `rep stos`/`rep movs` as one "
            "instruction, so large memset/memcpy calls (glibc's `*_erms` variants) weigh more in "
            "Ir than in time. libjansson, libmicrohttpd and plpgsql static functions show as "
            "addresses (no debug symbols installed); their exported callers are in the "
            "inclusive list.", "",
            "| label | date | code | server Ir/request | server CPU µs/req | backend CPU µs/req | wall µs/req |",
            "|---|---|---|---|---|---|---|"]
    for s in summaries:
        c = s["cpu"]
        head.append(f"| {s['label']} | {s['date']} | {s['code']} | {fmt(s['ir_per_request'])} | "
                    f"{c['server_us']} | {c['backend_us']} | {c['wall_us']} |")
    text = head + [""]
    for label in order:
        body = sections[label]
        while body and body[-1] == "":
            body = body[:-1]
        text += body + [""]
    with open(out_path, "w") as f:
        f.write("\n".join(text))
    print("\n".join(new))


if __name__ == "__main__":
    main()
