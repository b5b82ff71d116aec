"""``embedfleet optimize --to onnx-int8``, then the fleet serving the result vs in-process
torch, side by side in one run.

1. Optimize the packaged all-MiniLM-L6-v2 into a private model store (the default
   quality gate: 300 probe texts of data/sample.jsonl, mean cosine >= 0.99, retrieval
   MRR drop <= 0.01) and print what it measured (in-process, same threads).
2. Start a worker on the config it registered in and compare, on the bench corpus
   (real texts, not the probes), end to end from file to .npy, alternating rounds:
   in-process ``SentenceTransformer.encode(batch_size=32)`` (torch) vs the fleet serving
   the int8 model. Goal: >= 1.25x.
3. Retrieval quality on the corpus: each text's first sentence searches the rest of
   every text; MRR and recall@10 of in-process torch vs the fleet's int8 vectors.

    .venv/bin/python bench/optimize.py [--texts 1000] [--rounds 3] [--concurrency 1]
"""

from __future__ import annotations

import argparse
import json

import _fleet
import numpy as np
from throughput import fleet, in_process, in_process_model

NAME = "all-MiniLM-L6-v2-onnx-int8"


def retrieval(vectors_q: np.ndarray, vectors_d: np.ndarray) -> tuple[float, float]:
    from workers.optimize.gate import ranks

    r = ranks(vectors_q, vectors_d)
    return float((1.0 / (r + 1)).mean()), float((r < 10).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="in-process torch threads")
    args = parser.parse_args()
    _fleet.header("optimize: onnx-int8 through the fleet vs in-process torch")
    config = _fleet._WORK / "optimize" / "models.json"
    config.parent.mkdir()
    config.write_text(json.dumps({_fleet.MODEL: _fleet.model_entry(preload=False)}))
    from workers.optimize.pipeline import optimize_model

    result = optimize_model(_fleet.MODEL, "onnx-int8", config=str(config), name=NAME, say=print)
    q, s = result.entry["provenance"]["quality"], result.entry["provenance"]["speed"]
    print(
        f"optimize gate       mean cosine {q['cosine_mean']:.4f} (min {q['cosine_min']:.4f}), "
        f"MRR {q['mrr_source']:.4f} -> {q['mrr_candidate']:.4f} (drop {q['retrieval_drop']:.4f}), "
        f"recall@10 {q['recall_at_10_source']:.3f} -> {q['recall_at_10_candidate']:.3f} "
        f"on {q['probes']} probes"
    )
    print(
        f"optimize speed      torch {s['source_texts_per_s']:.1f} -> int8 {s['texts_per_s']:.1f} "
        f"texts/s = {s['speedup']:.2f}x in-process ({s['threads']} threads, {_fleet.load_avg()})",
        flush=True,
    )
    texts = _fleet.load_corpus(args.texts)
    src = _fleet.write_corpus(texts)
    local = in_process_model(args.threads)
    ratios, local_s, fleet_s = [], [], []
    with _fleet.server(), _fleet.workers(config, 1, args.concurrency) as procs:
        from producers import EmbeddingClient
        from workers.optimize.gate import retrieval_pairs

        client = EmbeddingClient(config_source=str(config))
        _fleet.warm(client, NAME, texts, args.concurrency)
        for r in range(args.rounds):
            took = {}
            for side in ("local", "fleet") if r % 2 == 0 else ("fleet", "local"):
                if side == "local":
                    took[side] = in_process(local, src, _fleet._WORK / "local.npy")
                else:
                    took[side], _ = fleet(client, NAME, src, _fleet._WORK / "fleet.npy")
            local_s.append(took["local"])
            fleet_s.append(took["fleet"])
            ratios.append(took["local"] / took["fleet"])
            print(
                f"round {r + 1}            in-process torch {args.texts / took['local']:6.1f} "
                f"texts/s  fleet int8 {args.texts / took['fleet']:6.1f} texts/s  "
                f"ratio {ratios[-1]:.3f}  ({_fleet.load_avg()})",
                flush=True,
            )
        queries, docs = retrieval_pairs(texts)
        fq = client.submit(queries, model=NAME, cache=False).wait(600)
        fd = client.submit(docs, model=NAME, cache=False).wait(600)
        loads = procs[0].loads()
    lq, ld = local.encode(queries, batch_size=32), local.encode(docs, batch_size=32)
    a, b = np.load(_fleet._WORK / "fleet.npy"), np.load(_fleet._WORK / "local.npy")
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    (mrr_t, rec_t), (mrr_q, rec_q) = retrieval(lq, ld), retrieval(fq, fd)
    n = args.texts
    print(f"texts               {n} real Debian package descriptions ({len(queries)} pairs)")
    print(f"in-process torch    {n / _fleet.median(local_s):8.1f} texts/s (median)")
    print(
        f"fleet onnx-int8     {n / _fleet.median(fleet_s):8.1f} texts/s (1 worker x "
        f"concurrency {args.concurrency}, end to end, cache off)"
    )
    print(f"ratio fleet int8 / in-process torch  {_fleet.median(ratios):.3f} (goal >= 1.25)")
    print(f"cosine int8 vs torch  mean {cos.mean():.4f} min {cos.min():.4f}")
    print(
        f"retrieval MRR       torch {mrr_t:.4f}  int8 {mrr_q:.4f}  drop {mrr_t - mrr_q:.4f} "
        f"(goal <= 0.01); recall@10 {rec_t:.4f} -> {rec_q:.4f}"
    )
    _fleet.print_loads(loads)
    _fleet.footer()


if __name__ == "__main__":
    main()
