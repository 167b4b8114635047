"""The page's "What was run" part: the resolved spec as `cnnbench build` shows it, training settings, the data
actually used (a fallback named), devices, versions, times and the command that reproduces each study.
"""

from __future__ import annotations

import json
from html import escape as e
from typing import Any

from cnnbench.plot.figure import device_label, join, num
from cnnbench.report.collect import Bench, LoneRun, Sweep
from cnnbench.report.layers import layer_table
from cnnbench.report.tables import count, rates, table


def _spec_html(spec: dict[str, Any], recorded_params: Any, recorded_flops: Any) -> str:
    if not spec:
        return "<p class=note>no spec recorded</p>"
    rows = layer_table(spec)
    known = all(r["params"] is not None for r in rows)
    total_p = sum(r["params"] for r in rows) if known else None
    total_f = sum(r["flops"] for r in rows) if known else None
    body = table(
        ["#", "type", "arguments", "output shape", "params", "FLOPs"],
        [
            [
                r["index"],
                r["type"],
                r["arguments"],
                r["output_shape"],
                "?" if r["params"] is None else f"{r['params']:,}",
                "?" if r["flops"] is None else f"{r['flops']:,}",
            ]
            for r in rows
        ],
        numeric=(0, 4, 5),
    )
    params = recorded_params if isinstance(recorded_params, int) else total_p
    flops = recorded_flops if isinstance(recorded_flops, int) else total_f
    totals = (
        f"<p>input {e(str(tuple(spec.get('input_shape') or ())))} · total parameters {count(params)} · forward FLOPs per sample "
        f"{count(flops)} (multiply-add = 2 FLOPs)</p>"
    )
    return f"<p><b>{e(str(spec.get('name', '')))}</b> {e(str(spec.get('description') or ''))}</p>{body}{totals}"


def _training(spec: dict[str, Any]) -> dict[str, Any]:
    return spec.get("training") if isinstance(spec.get("training"), dict) else {}


def _runs_facts(runs) -> list[tuple[str, str]]:
    records = [r.record for r in runs]
    data = [r.data for r in runs]
    used = join(d.get("name") for d in data)
    asked = join(d.get("requested") for d in data)
    sizes = join(
        f"{d['train_samples']:,} train / {d['val_samples']:,} validation"
        + (f" / {d['test_samples']:,} test" if d.get("test_samples") else "")
        for d in data
        if d.get("train_samples") and d.get("val_samples")
    )
    fallback = f" — <span class=warn>a fallback: {e(asked)} was asked for</span>" if asked and used and asked != used else ""
    data_warn = join(w for d in data for w in (d.get("warnings") or []))
    env = [r.get("environment") or {} for r in records]
    versions = ", ".join(
        f"{k} {join(x.get(k) for x in env)}"
        for k in ("cnnbench", "keras", "tensorflow", "jax", "torch", "numpy", "python")
        if join(x.get(k) for x in env)
    )
    starts = sorted(r["started_at"] for r in records if r.get("started_at"))
    ends = sorted(r["ended_at"] for r in records if r.get("ended_at"))
    total = sum(r.get("total_time_s") or 0 for r in records)
    return [
        (
            "data",
            f"{e(used or '?')}{' (' + e(sizes) + ')' if sizes else ''}{fallback}"
            + (f" · {e(join(d.get('source') for d in data))}" if join(d.get("source") for d in data) else ""),
        ),
        ("data warnings", e(data_warn)),
        ("devices", e(join(device_label(r.get("device"), r.get("device_name")) for r in records if r.get("device")))),
        (
            "backends",
            e(join(r.get("backend") for r in records))
            + (f" (engine {e(join(r.get('engine') for r in records))})" if join(r.get("engine") for r in records) else ""),
        ),
        ("versions", e(versions)),
        ("machine", e(join(f"{x.get('cpu')} ({x.get('cpu_cores')} cores), {x.get('platform')}" for x in env if x.get("cpu")))),
        ("started … ended", e(f"{starts[0]} … {ends[-1]}") if starts and ends else ""),
        ("training time, all runs", f"{total:,.1f} s" if total else ""),
    ]


def _facts(rows: list[tuple[str, str]]) -> str:
    return "<table class=facts><tbody>" + "".join(f"<tr><th>{e(k)}</th><td>{v}</td></tr>" for k, v in rows if v) + "</tbody></table>"


def _command(text: str, spec: dict[str, Any]) -> str:
    return (
        f"<p>Reproduce: save the resolved spec below as <code>spec.json</code>, then run</p><pre>{e(text)}</pre>"
        f"<details><summary>resolved spec (spec.json)</summary><pre>{e(json.dumps(spec, indent=2))}</pre></details>"
    )


def sweep_run(s: Sweep, anchor: str) -> str:
    spec = s.record.get("spec") if isinstance(s.record.get("spec"), dict) else {}
    t = _training(spec)
    opts = s.record.get("options") if isinstance(s.record.get("options"), dict) else {}
    values = s.record.get("values_text") or ",".join(num(v) for v in s.record.get("values") or [])
    cmd = f"cnnbench sweep-lr spec.json --values {values}"
    for key, flag in (("device", "--device"), ("backend", "--backend"), ("engine", "--engine"), ("parallel", "--parallel")):
        if opts.get(key) not in (None, ""):
            cmd += f" {flag} {opts[key]}"
    params = join(r.record.get("params") for r in s.runs)
    flops = join(r.record.get("flops_per_sample") for r in s.runs)
    facts = [
        ("optimizer", e(str(t.get("optimizer", "?")))),
        ("learning rates", e(rates(sorted(r["learning_rate"] for r in s.summary if isinstance(r.get("learning_rate"), float))))),
        ("batch", e(str(t.get("batch_size", "?")))),
        ("epochs", e(str(t.get("epochs", "?")))),
        ("seeds", e(join(r.record.get("seed") for r in s.runs) or str(t.get("seed", "?")))),
        ("steps per execution", e(str(t.get("steps_per_execution", "")))),
        *_runs_facts(s.runs),
        ("cnnbench that ran it", e(str(s.record.get("cnnbench", "")))),
    ]
    return (
        f'<h3 id="{anchor}-run">Sweep {e(s.folder.name)}</h3>'
        f"{_spec_html(spec, int(params) if params.isdigit() else None, int(flops) if flops.isdigit() else None)}"
        f"{_facts(facts)}{_command(cmd, spec)}"
    )


def bench_run(b: Bench, anchor: str) -> str:
    spec = b.info.get("spec") if isinstance(b.info.get("spec"), dict) else {}
    t = _training(spec)
    opts = b.info.get("options") if isinstance(b.info.get("options"), dict) else {}
    cmd = "cnnbench bench spec.json"
    for key, flag in (("devices", "--devices"), ("backends", "--backends"), ("filters", "--filters")):
        if isinstance(opts.get(key), list):
            cmd += f" {flag} {','.join(map(str, opts[key]))}"
    for key, flag in (("repeats", "--repeats"), ("measure_epochs", "--measure-epochs"), ("threads", "--threads")):
        if opts.get(key) is not None:
            cmd += f" {flag} {opts[key]}"
    machine = b.info.get("machine") if isinstance(b.info.get("machine"), dict) else {}
    versions = b.info.get("versions") if isinstance(b.info.get("versions"), dict) else {}
    models = b.info.get("models") if isinstance(b.info.get("models"), dict) else {}
    rows = b.rows
    facts = [
        ("optimizer", e(str(t.get("optimizer", "?")))),
        ("batch", e(str(t.get("batch_size", "?")))),
        ("epochs", e(str(t.get("epochs", "?")))),
        ("seed", e(str(t.get("seed", "?")))),
        ("data", e(join(rows["dataset"]) if "dataset" in rows else str((spec.get("data") or {}).get("dataset", "?")))),
        ("devices", e(join(device_label(d, n) for d, n in zip(b.ok["device"], b.ok["device_name"], strict=True)))),
        ("backends", e(join(rows["backend"]) + (f" (engine {join(rows['engine'])})" if "engine" in rows and join(rows["engine"]) else ""))),
        ("versions", e(", ".join(f"{k} {v}" for k, v in versions.items() if v))),
        ("machine", e(", ".join(f"{k} {v}" for k, v in machine.items() if v and k != "hostname"))),
        ("started … ended", e(f"{b.info.get('started_at', '?')} … {b.info.get('ended_at', '?')}")),
        ("status", e(str(b.info.get("status", "")))),
        ("training time, all rows", f"{float(rows['total_s'].astype(float).sum()):,.1f} s" if "total_s" in rows else ""),
        ("warnings", e("; ".join(map(str, b.info.get("warnings") or [])))),
    ]
    sizes = (
        table(
            ["filters", "params", "forward FLOPs per sample"],
            [[k, f"{m.get('params', 0):,}", f"{m.get('flops_per_sample', 0):,}"] for k, m in models.items() if isinstance(m, dict)],
            numeric=(0, 1, 2),
        )
        if models
        else ""
    )
    return f'<h3 id="{anchor}-run">Bench {e(b.folder.name)}</h3>{_spec_html(spec, None, None)}{sizes}{_facts(facts)}{_command(cmd, spec)}'


def lone_run(r: LoneRun, anchor: str) -> str:
    rec = r.run.record
    facts = [
        ("learning rate", num(r.run.lr) if r.run.lr else "?"),
        ("optimizer", e(str(rec.get("optimizer", "?")))),
        ("batch", e(str(rec.get("batch_size", "?")))),
        ("epochs", e(str(rec.get("epochs", "?")))),
        ("seed", e(str(rec.get("seed", "?")))),
        ("parameters", count(rec.get("params"))),
        ("FLOPs per sample", count(rec.get("flops_per_sample"))),
        *_runs_facts([r.run]),
    ]
    return f'<h3 id="{anchor}-run">Run {e(r.folder.name)}</h3>{_facts(facts)}'


def study_command(s) -> str:
    """`cnnbench sweep spec.json --set PATH=VALUES … --seeds …` that plans the same points."""
    from cnnbench.grid import format_point_value

    index = s.index
    cmd = "cnnbench sweep spec.json"
    for axis in index.get("axes") or []:
        if not isinstance(axis, dict) or not isinstance(axis.get("path"), str):
            continue
        given = axis.get("range")
        if isinstance(given, list) and len(given) == 2:
            values = f"{format_point_value(given[0])}..{format_point_value(given[1])}"
        else:
            values = ",".join(format_point_value(x) for x in axis.get("values") or [])
        cmd += f" --set '{axis['path']}={values}'"
    for group in index.get("zip") or []:
        if isinstance(group, list):
            cmd += f" --zip {','.join(map(str, group))}"
    spec = index.get("spec") if isinstance(index.get("spec"), dict) else {}
    base = (spec.get("training") or {}).get("seed", 0) if isinstance(spec.get("training"), dict) else 0
    seeds = [x for x in index.get("seeds") or [] if isinstance(x, int)]
    if seeds and isinstance(base, int):
        offsets = [x - base for x in seeds]
        cmd += f" --seeds {len(seeds) if offsets == list(range(len(seeds))) else ','.join(map(str, offsets))}"
    if index.get("method") in ("random", "sobol"):
        cmd += f" --method {index['method']} --n {index.get('n')}"
    for key in ("tune", "rank"):
        if isinstance(index.get(key), str) and not (key == "rank" and index[key] == "mean"):
            cmd += f" --{key} {index[key]}"
    opts = index.get("options") if isinstance(index.get("options"), dict) else {}
    for key in ("device", "backend", "engine", "parallel"):
        if opts.get(key) not in (None, "", "auto", 1):
            cmd += f" --{key} {opts[key]}"
    return cmd
