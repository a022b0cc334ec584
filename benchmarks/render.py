"""Renders the docs' benchmark tables from benchmarks/results/*.json.

One number, one source: every measured number in BUILD_NOTES.md and docs/*.md
sits between marker comments

    <!-- bench:NAME:begin -->
    ... generated text ...
    <!-- bench:NAME:end -->

and is regenerated here from the JSON a benchmark wrote (see
benchmarks/provenance.py). NAME is one of `SECTIONS`.

Usage:
    python benchmarks/render.py           # rewrite the sections in place
    python benchmarks/render.py --check   # exit 1 if a section differs

tests/benchmarks/test_render.py runs the check.
"""

import argparse
import glob
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import provenance  # noqa: E402

REPO = provenance.REPO
MARKER = re.compile(r"<!-- bench:([a-z0-9_:]+):begin -->\n(.*?)<!-- bench:\1:end -->", re.S)


def documents():
    return [os.path.join(REPO, "BUILD_NOTES.md")] + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))


def _interval(r, fmt="{:.2f}"):
    if r["low"] is None:
        return fmt.format(r["median"]) + " (too few rounds for an interval)"
    return f"{fmt.format(r['median'])} [{fmt.format(r['low'])}, {fmt.format(r['high'])}]"


def _source(payload, name):
    p = payload["provenance"]
    dirty = " (uncommitted changes)" if p["git"]["dirty"] else ""
    load = "/".join(f"{v:g}" for v in p["load_before"] or [])
    load_after = "/".join(f"{v:g}" for v in p["load_after"] or [])
    m = p["machine"]
    return (
        f"Source: `benchmarks/results/{name}.json`, `{p['command']}`, {p['timestamp']}, "
        f"commit {p['git']['commit']}{dirty}; {m['cpu']}, {m['cores']} cores, "
        f"{m['memory_gib']} GiB; load average (1/5/15 min) {load} before, {load_after} after."
    )


def _ms(t):
    return f"{t['median']:.1f}"


def loss_speed_tfa(payload):
    """Ours against real TFA 0.23 and the port, with the MDR overhead."""
    res = payload["results"]
    v = payload["provenance"]["versions"]
    lines = [
        f"Forward + backward, d = {res['dim']}, {res['images_per_class']} images per class, "
        f"margin {res['margin']}, `tf.function`; median ms over {res['rounds']} interleaved "
        f"rounds; ratios are medians of per-round ratios with their 95% interval. Ours: "
        f"TensorFlow {v['tensorflow']}, Keras {v['keras']}; TFA: TensorFlow "
        f"{v['tfa']['tensorflow']}, TensorFlow Addons {v['tfa']['tensorflow_addons']} "
        "(a subprocess of `.venv-tfa`); port: TFA's semi-hard algorithm op for op in TF 2.21.",
        "",
        "| B | ours semi-hard | TFA semi-hard | TFA / ours | TFA / ours, CPU time | port | "
        "port / ours | ours hard | TFA hard | TFA / ours (hard) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for b, entry in res["batches"].items():
        t, r = entry["times_ms"], entry["ratios"]
        cpu = entry.get("cpu_ratios", {}).get("tfa:semihard / ours:semihard")
        cpu = _interval(cpu, "{:.1f}x") if cpu else "-"

        def cell(key, t=t):
            return _ms(t[key]) if key in t else "skipped"

        def ratio(name, r=r):
            return _interval(r[name], "{:.1f}x") if name in r else "-"

        lines.append(
            f"| {b} | {cell('ours:semihard')} | {cell('tfa:semihard')} | "
            f"{ratio('tfa:semihard / ours:semihard')} | {cpu} | {cell('port:semihard')} | "
            f"{ratio('port:semihard / ours:semihard')} | {cell('ours:hard')} | "
            f"{cell('tfa:hard')} | {ratio('tfa:hard / ours:hard')} |"
        )
    lines += ["", "MDR's overhead (with MDR / without, the two timed as a pair with their calls "
              "alternated one by one; median per-round ratio, 95% interval):", "",
              "| B | semi-hard | hard | distance-weighted |", "|---|---|---|---|"]
    for b, entry in res["batches"].items():
        r = entry["ratios"]
        cells = [
            _interval(r[f"ours:{t}+mdr / ours:{t}"], "{:.3f}") for t in ("semihard", "hard", "distance_weighted")
        ]
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    lines += ["", "The same, in process CPU time per call:", "",
              "| B | semi-hard | hard | distance-weighted |", "|---|---|---|---|"]
    for b, entry in res["batches"].items():
        r = entry.get("cpu_ratios", {})
        cells = [_interval(r[f"ours:{t}+mdr / ours:{t}"], "{:.3f}") if r else "-"
                 for t in ("semihard", "hard", "distance_weighted")]
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    lines += ["", *loss_speed_targets(res), "", _source(payload, "loss_speed")]
    return "\n".join(lines)


TRIPLET_LABELS = {"semihard": "semi-hard", "hard": "hard", "distance_weighted": "distance-weighted"}


def _verdict(met):
    return "**met**" if met else "**not met**"


def loss_speed_targets(res):
    """The two targets, checked against the interval ends of the B = 512 run."""
    entry = res["batches"].get("512")
    if entry is None:
        return ["Targets: no B = 512 measurement in this run."]
    lines = ["Targets at B = 512, judged on the end of each 95% interval:", ""]
    for label, ratios in (("wall clock", entry["ratios"]), ("CPU time", entry.get("cpu_ratios"))):
        if not ratios:
            continue
        tfa = ratios.get("tfa:semihard / ours:semihard")
        if tfa is not None and tfa["low"] is not None:
            lines.append(f"- semi-hard >= 30x real TFA ({label}): lower end {tfa['low']:.1f}x, "
                         f"{_verdict(tfa['low'] >= 30.0)}.")
        for t in ("semihard", "hard", "distance_weighted"):
            r = ratios.get(f"ours:{t}+mdr / ours:{t}")
            if r is not None and r["high"] is not None:
                lines.append(f"- MDR overhead <= 15% on {TRIPLET_LABELS[t]} ({label}): upper end "
                             f"+{100 * (r['high'] - 1):.1f}%, {_verdict(r['high'] <= 1.15)}.")
    return lines


FAMILY_LABELS = {
    "contrastive": "ContrastiveLoss", "margin": "MarginLoss",
    "multi_similarity": "MultiSimilarityLoss (+ miner)", "proxy_anchor": "ProxyAnchorLoss",
    "supcon": "SupConLoss", "ntxent": "NTXentLoss", "arcface": "ArcFaceLoss",
}


def loss_speed_pml(payload):
    """Every loss family against pytorch-metric-learning."""
    res = payload["results"]
    v = payload["provenance"]["versions"]
    pml = v.get("pml", {})
    lines = [
        f"Forward + backward (gradients of the embeddings and of the loss's own variables), "
        f"d = {res['dim']}, {res['images_per_class']} images per class, median ms over "
        f"{res['rounds']} interleaved rounds. Ours: TensorFlow {v['tensorflow']} `tf.function`; "
        f"PML: pytorch-metric-learning {pml.get('pytorch_metric_learning')} on torch "
        f"{pml.get('torch')} ({pml.get('torch_threads')} threads), eager, in a subprocess of "
        "`.venv-torch`. PML / ours above 1 means we are faster.",
        "",
        "| loss | B | ours | PML | PML / ours [95% interval] |",
        "|---|---|---|---|---|",
    ]
    for family in res["families"]:
        for b, entry in res["batches"].items():
            t, r = entry["times_ms"], entry["ratios"]
            ours, theirs = t.get(f"ours:{family}"), t.get(f"pml:{family}")
            if ours is None:
                continue
            name = f"pml:{family} / ours:{family}"
            ratio = _interval(r[name], "{:.2f}x") if name in r else "-"
            lines.append(
                f"| {FAMILY_LABELS.get(family, family)} | {b} | {_ms(ours)} | "
                f"{_ms(theirs) if theirs else 'skipped'} | {ratio} |"
            )
    lines += ["", _source(payload, "loss_speed")]
    return "\n".join(lines)


def eval_speed(payload):
    res = payload["results"]
    lines = [
        f"{res['num_items']:,} x {res['dim']} float32, {res['num_classes']:,} classes, "
        f"Recall@{{{','.join(str(k) for k in res['ks'])}}} + MAP@R + R-Precision, exact; "
        f"the distance GEMM is 2 N^2 d = {res['tflop']:.2f} TFLOP.",
        "",
        "| engine | seconds | GFLOP/s | peak RSS of the process |",
        "|---|---|---|---|",
        f"| blocked (default) | {res['seconds']:.2f} | {res['gflops']:.1f} | {res['peak_rss_gib']:.2f} GiB |",
    ]
    if "faiss" in res:
        f = res["faiss"]
        lines.append(f"| faiss top-K lists (`method=\"faiss\"`) | {f['seconds']:.2f} | {f['gflops']:.1f} | "
                     f"{f['peak_rss_gib_after_both']:.2f} GiB (after both ran) |")
    lines += [
        "",
        f"Float32 matmul peak measured in the same run (best of NumPy and TensorFlow 4096^3 "
        f"products before, between and after the evaluations): {res['peak_gflops']:.1f} GFLOP/s; "
        f"the blocked engine ran at **{100 * res['fraction_of_peak']:.1f}% of it**, obtaining "
        f"{res['cores_obtained']:.2f} cores of {payload['provenance']['machine']['cores']} "
        f"(per core obtained: {res['per_core_gflops']:.1f} GFLOP/s against NumPy's "
        f"{res['numpy_per_core_gflops']:.1f}).",
        "",
        _source(payload, "eval_speed"),
    ]
    return "\n".join(lines)


PIPELINE_LABELS = {
    "baseline": "plain `tf.data` decode + resize + batch (baseline)",
    "keras_mdr": "`balanced_dataset` + `train_transform` (default crop)",
    "keras_mdr_keras_cv": "`balanced_dataset` + `train_transform(implementation=\"keras_cv\")`",
}


def pipeline_speed(payload):
    """Input-pipeline throughput against the plain tf.data baseline."""
    res = payload["results"]
    wall, cpu = res["images_per_second"], res["images_per_cpu_second"]
    lines = [
        f"{res['num_images']:,} real JPEGs ({res['data']}), batches of {res['batch_size']} "
        f"({res['classes_per_batch']} x {res['images_per_class']}) at {res['image_size']} px; "
        f"{res['rounds']} alternating rounds of {res['batches_per_round']} batches; medians "
        "with 95% intervals, ratios are medians of per-round ratios to the baseline "
        "(target: >= 0.9x).",
        "",
        "| pipeline | images/s | / baseline | images per CPU-second | / baseline (CPU) |",
        "|---|---|---|---|---|",
    ]
    for name in wall:
        ratio = _interval(res["ratio_to_baseline"][name], "{:.2f}x") if name != "baseline" else "1"
        cpu_ratio = (_interval(res["cpu_ratio_to_baseline"][name], "{:.2f}x")
                     if name != "baseline" else "1")
        lines.append(f"| {PIPELINE_LABELS.get(name, name)} | {_interval(wall[name], '{:.0f}')} | "
                     f"{ratio} | {_interval(cpu[name], '{:.0f}')} | {cpu_ratio} |")
    lines += ["", _source(payload, "pipeline_speed")]
    return "\n".join(lines)


def _setting(row):
    params = row["search_params"]
    name = row["kind"] + (" (exact)" if row["kind"] == "flat" else "")
    return name + "".join(f", `{k}={v}`" for k, v in params.items())


def index_recall(payload):
    """Approximate EmbeddingIndex kinds against exact search, two kinds of data."""
    res = payload["results"]
    data = res["data"]
    low, full = data["low_dim"], data["full_rank"]
    exact_low, exact_full = low["rows"][0]["recall_at_1"], full["rows"][0]["recall_at_1"]
    k = res["k"]
    lines = [
        f"{res['gallery']:,}-item gallery, {res['queries']:,} held-out queries searched in one "
        f"batch, {res['dim']}-d, SOP-like classes. \"Low-dim\": classes generated in "
        f"{low['latent_dim']} dimensions (noise {low['noise']}) and mapped linearly to "
        f"{res['dim']}; \"full-rank\": class centres plus isotropic {res['dim']}-d noise "
        f"({full['noise']}). \"recall@{k} vs exact\" is the fraction of the exact {k} nearest "
        "neighbours returned; build and query times (low-dim / full-rank) are wall clock.",
        "",
        f"| kind, search setting | build (s) | ms / query | recall@{k} vs exact, low-dim | "
        f"Recall@1 (exact: {exact_low:.3f}) | recall@{k} vs exact, full-rank | "
        f"Recall@1 (exact: {exact_full:.3f}) |",
        "|---|---|---|---|---|---|---|",
    ]
    for a, b in zip(low["rows"], full["rows"]):
        build = "" if a["build_s"] is None else f"{a['build_s']:.1f} / {b['build_s']:.1f}"
        lines.append(
            f"| {_setting(a)} | {build} | {a['ms_per_query']:.2f} / {b['ms_per_query']:.2f} | "
            f"{a['recall_vs_exact']:.3f} | {a['recall_at_1']:.3f} | {b['recall_vs_exact']:.3f} | "
            f"{b['recall_at_1']:.3f} |"
        )
    lines += ["", _source(payload, "index_recall")]
    return "\n".join(lines)


SCALE_VARIANTS = (("bare", "loss alone"), ("mdr_unscaled", "MDR, `scale_base=False` (default)"),
                  ("mdr_scaled", "MDR, `scale_base=True`"))


def scale_base(payload):
    """Inner-product losses inside MDR, with and without dividing their input by s."""
    res = payload["results"]
    recall = res["recall_at_1"]
    lines = [
        f"Recall@1 on digits' unseen classes 5-9, MLP with 32-d unit embeddings, "
        f"{res['epochs']} epochs, seeds 0-{res['seeds'] - 1}; per seed, then the paired "
        "difference `scale_base=False - True` (too few seeds for an interval).",
        "",
        "| loss | " + " | ".join(label for _, label in SCALE_VARIANTS) + " | False - True (mean) |",
        "|---|---|---|---|---|",
    ]
    for loss in ("supcon", "multi_similarity"):
        cells = [" / ".join(f"{v:.3f}" for v in recall[f"{loss}/{key}"]) for key, _ in SCALE_VARIANTS]
        diff = [a - b for a, b in zip(recall[f"{loss}/mdr_unscaled"], recall[f"{loss}/mdr_scaled"])]
        cells.append(" / ".join(f"{d:+.3f}" for d in diff) + f" ({sum(diff) / len(diff):+.3f})")
        lines.append(f"| {FAMILY_LABELS[loss]} | " + " | ".join(cells) + " |")
    lines += ["", _source(payload, "scale_base")]
    return "\n".join(lines)


SECTIONS = {
    "loss_speed:tfa": ("loss_speed", loss_speed_tfa),
    "loss_speed:pml": ("loss_speed", loss_speed_pml),
    "eval_speed": ("eval_speed", eval_speed),
    "pipeline_speed": ("pipeline_speed", pipeline_speed),
    "index_recall": ("index_recall", index_recall),
    "scale_base": ("scale_base", scale_base),
}


def render_section(name):
    if name not in SECTIONS:
        raise ValueError(f"Expected a section among {sorted(SECTIONS)}. Received: name={name!r}")
    result, fn = SECTIONS[name]
    return fn(provenance.load(result)).rstrip("\n") + "\n"


def render_text(text):
    """`text` with every bench section regenerated."""
    return MARKER.sub(
        lambda m: f"<!-- bench:{m.group(1)}:begin -->\n{render_section(m.group(1))}"
                  f"<!-- bench:{m.group(1)}:end -->",
        text,
    )


def sections(text):
    return [m.group(1) for m in MARKER.finditer(text)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    stale = []
    for path in documents():
        with open(path) as f:
            text = f.read()
        rendered = render_text(text)
        if rendered != text:
            stale.append(os.path.relpath(path, REPO))
            if not args.check:
                with open(path, "w") as f:
                    f.write(rendered)
    if args.check and stale:
        print("stale rendered sections in:", ", ".join(stale))
        return 1
    print("rendered:" if not args.check else "up to date.", ", ".join(stale) or "nothing changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
