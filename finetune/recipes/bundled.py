"""The recipe of the model that ships with extractkit (one command reruns it).

    python -m extractkit.finetune.recipes.bundled --out runs/bundled            # all stages
    python -m extractkit.finetune.recipes.bundled --out runs/bundled --resume   # after a crash
    python -m extractkit.finetune.recipes.bundled --out runs/bundled --stage 5 --install  # one stage

Stage 1 teaches the task on real documents: the 500 SROIE training receipts
(the 126 dev receipts are never used). Stage 2 starts from stage 1 and
generalizes: synthetic documents for every built-in schema, synthetic documents
for many generated schemas (varied field names, types and nesting, so unseen
user schemas work), and a replay of SROIE receipts so stage 1 is not forgotten.
Stage 3 starts from stage 2 with fresh documents (a new seed) and more of them
per built-in schema: the stage-2 evaluation showed the built-ins undertrained
(55-77% field accuracy on held-out synthetic sets, mostly invented values for
absent fields and list items cut short), not a surface form it could not read.
Stage 4 repeats that step once more (new seed, 220 per built-in, lower rate).
Stage 5 aims at what stage 4 still got wrong (lists: 57 % on receipts, 27 % on
invoices): a model that invents a line item when the document has none, puts a
lone price in `quantity` when the quantity is missing, or drops a thousands
group ("1 342,10" -> 342.1). It oversamples documents with those traits (empty
lists, missing values inside list items, amounts of 1,000 or more) and gives
more documents to the weaker built-ins. Stage 6 is a short pass at half the
rate that replays more SROIE receipts (stage 5 had cost SROIE dev 1.4 points).
Stage 7 is another short pass at that rate aimed at stage 6's held-out misses:
job postings whose salary currency stands as a bare value ("..., SEK, /month":
4 of 30 left null), contact e-mails spelled initial + surname (the initial
dropped), invoice subtotals and lists; more documents for those built-ins.
The final adapter is `OUT/stage7`; `--install` copies it into the package.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from extractkit._schema import as_output_schema, load_schema

from .._data import Example, read_examples
from .._train import TrainConfig
from .sroie import SroieReceipt

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data"
BUILTINS = ("invoice", "receipt", "contact", "event", "job_posting")

STAGE1 = TrainConfig(epochs=1.0, batch_size=8, learning_rate=3e-4, warmup_steps=5, save_every=5, seed=0)
STAGE2 = replace(STAGE1, learning_rate=2e-4, warmup_steps=3)
PER_BUILTIN = 60          # synthetic documents per built-in schema
GENERATED_SCHEMAS = 60    # generated schemas ...
PER_GENERATED = 5         # ... with this many documents each
SROIE_REPLAY = 120        # SROIE training receipts seen again in stage 2
STAGE3 = replace(STAGE1, learning_rate=1.5e-4, warmup_steps=3)
STAGE3_MIX = {"per_builtin": 150, "generated_schemas": 40, "per_generated": 5, "sroie_replay": 150}
# Stage 4: the stage-3 evaluation (83.8 % on held-out synthetic built-ins, up from
# 67.9 % after stage 2) said more built-in documents still pay; a lower rate keeps
# what stage 3 learned.
STAGE4 = replace(STAGE1, learning_rate=1e-4, warmup_steps=3)
STAGE4_MIX = {"per_builtin": 220, "generated_schemas": 20, "per_generated": 5, "sroie_replay": 100}
# Stage 5: per built-in counts follow the stage-4 held-out scores (invoice 86 %,
# receipt 90 %, contact 88 %, job posting 95 %, event 96 %); half of each
# built-in's documents are drawn from the hard cases (see `hard`).
STAGE5 = replace(STAGE1, learning_rate=1e-4, warmup_steps=3)
STAGE5_PER_BUILTIN = {"invoice": 260, "receipt": 220, "contact": 170, "job_posting": 140, "event": 90}
STAGE5_MIX = {"generated_schemas": 20, "per_generated": 5, "sroie_replay": 100}
HARD_SHARE = 0.5
# Stage 6: stage 5 lifted the synthetic built-ins to 94.9 % but SROIE dev fell from 91.3 to
# 89.9 % and event from 96.2 to 94.2 %: a short pass at half the rate, replaying more SROIE
# receipts, with fewer built-in documents (still half hard cases).
STAGE6 = replace(STAGE1, learning_rate=5e-5, warmup_steps=3)
STAGE6_PER_BUILTIN = {"invoice": 100, "receipt": 80, "event": 80, "contact": 60, "job_posting": 40}
STAGE6_MIX = {"generated_schemas": 10, "per_generated": 5, "sroie_replay": 160}
# Stage 7: stage 6 left 57 of 1,110 held-out synthetic fields wrong: invoice 23 (lists 10,
# subtotal 5, buyer 4), contact 10 (e-mail 5), event 9, receipt 9 (lists 7), job posting 6
# (salary currency 4). Same rate as stage 6, counts follow the misses, SROIE replay kept
# at 160 (stage 5 showed SROIE dev falls without it).
STAGE7 = replace(STAGE1, learning_rate=5e-5, warmup_steps=3)
STAGE7_PER_BUILTIN = {"invoice": 130, "job_posting": 100, "contact": 100, "receipt": 80, "event": 60}
STAGE7_MIX = {"generated_schemas": 10, "per_generated": 5, "sroie_replay": 160}
FINAL = "stage7"


def sroie_train() -> list[tuple]:
    schema = as_output_schema(SroieReceipt)
    return [(schema, ex) for ex in read_examples(DATA / "sroie" / "train.jsonl", SroieReceipt)]


def mixed_data(seed: int, per_builtin: int, generated_schemas: int, per_generated: int,
               sroie_replay: int) -> list[tuple]:
    """Synthetic built-ins + synthetic generated schemas + a replay of SROIE receipts.

    Seeds below 10000 only: the held-out synthetic sets use seed 10000."""
    from .._synth import synthesize

    pairs: list[tuple] = []
    for name in BUILTINS:
        schema = load_schema(name)
        pairs += [(schema, ex) for ex in synthesize(schema, per_builtin, seed=seed)]
    return pairs + generated_and_replay(seed, generated_schemas, per_generated, sroie_replay)


def generated_and_replay(seed: int, generated_schemas: int, per_generated: int, sroie_replay: int) -> list[tuple]:
    """Documents of freshly generated schemas, then a shuffled replay of SROIE training receipts."""
    from .._synth import random_schemas, synthesize

    pairs: list[tuple] = []
    # A new seed draws new generated schemas too, so each stage sees schemas the last did not.
    for i, js in enumerate(random_schemas(generated_schemas, seed=seed)):
        schema = as_output_schema(js)
        pairs += [(schema, ex) for ex in synthesize(schema, per_generated, seed=seed + i)]
    replay = sroie_train()
    random.Random(seed).shuffle(replay)
    return pairs + replay[:sroie_replay]


def hard(output: Any) -> bool:
    """Traits stage 4 failed on: an empty list, a missing value inside a list item, an amount >= 1000."""
    if isinstance(output, dict):
        return any(hard(v) for v in output.values())
    if isinstance(output, list):
        return not output or any(
            isinstance(it, dict) and (None in it.values() or any(_big(v) for v in it.values())) or hard(it)
            for it in output)
    return False


def _has_empty_list(output: dict) -> bool:
    return any(v == [] for v in output.values())


def _big(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) >= 1000


def with_hard_cases(schema, n: int, seed: int) -> list[Example]:
    """`n` documents of `schema`, HARD_SHARE of them (when there are enough) with a `hard` trait."""
    from .._synth import synthesize

    pool = synthesize(schema, 4 * n, seed=seed)
    # Empty lists first (a quarter of the documents): inventing an item was stage 4's commonest error.
    empty = [e for e in pool if _has_empty_list(e.output)][: n // 4]
    tough = empty + [e for e in pool if hard(e.output) and e not in empty][: int(n * HARD_SHARE) - len(empty)]
    rest = [e for e in pool if not hard(e.output)][: n - len(tough)]
    chosen = tough + rest
    random.Random(seed).shuffle(chosen)
    return chosen


def targeted_data(seed: int, per_builtin: dict[str, int], generated_schemas: int, per_generated: int,
                  sroie_replay: int) -> list[tuple]:
    """Like `mixed_data`, with a count per built-in and half of each drawn from the hard cases."""
    pairs: list[tuple] = []
    for name, n in per_builtin.items():
        schema = load_schema(name)
        pairs += [(schema, ex) for ex in with_hard_cases(schema, n, seed)]
    return pairs + generated_and_replay(seed, generated_schemas, per_generated, sroie_replay)


def stage5_data(seed: int = 4) -> list[tuple]:
    return targeted_data(seed, STAGE5_PER_BUILTIN, **STAGE5_MIX)


def stage6_data(seed: int = 5) -> list[tuple]:
    return targeted_data(seed, STAGE6_PER_BUILTIN, **STAGE6_MIX)


def stage7_data(seed: int = 6) -> list[tuple]:
    return targeted_data(seed, STAGE7_PER_BUILTIN, **STAGE7_MIX)


def stage2_data(seed: int = 1) -> list[tuple]:
    return mixed_data(seed, PER_BUILTIN, GENERATED_SCHEMAS, PER_GENERATED, SROIE_REPLAY)


def stage3_data(seed: int = 2) -> list[tuple]:
    return mixed_data(seed, **STAGE3_MIX)


def stage4_data(seed: int = 3) -> list[tuple]:
    return mixed_data(seed, **STAGE4_MIX)


def run_stage(name: str, data: list[tuple], config: TrainConfig, out: Path, *, init: Path | None,
              resume: bool) -> None:
    from extractkit._manifest import write_training_manifest
    from .._train import train

    folder = out / name
    if (folder / "manifest.json").exists():
        print(f"{name}: already trained ({folder})")
        return
    result = train(data, folder, config=config, init_adapter=init, resume=resume and (folder / "checkpoint").exists())
    write_training_manifest(folder, result, config, [s for s, _ in data],
                            sources={"recipe": "extractkit.finetune.recipes.bundled", "stage": name,
                                     "init_adapter": str(init) if init else None, "examples": len(data)})
    print(json.dumps({"stage": name, "steps": result.steps, "seconds": round(result.seconds),
                      "final_loss": round(result.final_loss, 4)}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--stage", choices=["1", "2", "3", "4", "5", "6", "7", "all"], default="all")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--install", action="store_true", help="copy the final adapter into the package")
    args = parser.parse_args(argv)
    if args.stage in ("1", "all"):
        run_stage("stage1", sroie_train(), STAGE1, args.out, init=None, resume=args.resume)
    if args.stage in ("2", "all"):
        run_stage("stage2", stage2_data(), STAGE2, args.out, init=args.out / "stage1", resume=args.resume)
    if args.stage in ("3", "all"):
        run_stage("stage3", stage3_data(), STAGE3, args.out, init=args.out / "stage2", resume=args.resume)
    if args.stage in ("4", "all"):
        run_stage("stage4", stage4_data(), STAGE4, args.out, init=args.out / "stage3", resume=args.resume)
    if args.stage in ("5", "all"):
        run_stage("stage5", stage5_data(), STAGE5, args.out, init=args.out / "stage4", resume=args.resume)
    if args.stage in ("6", "all"):
        run_stage("stage6", stage6_data(), STAGE6, args.out, init=args.out / "stage5", resume=args.resume)
    if args.stage in ("7", "all"):
        run_stage("stage7", stage7_data(), STAGE7, args.out, init=args.out / "stage6", resume=args.resume)
    if args.install:
        from extractkit._model import BUNDLED_ADAPTER

        shutil.rmtree(BUNDLED_ADAPTER, ignore_errors=True)
        BUNDLED_ADAPTER.mkdir(parents=True)
        for f in ("adapter_model.safetensors", "manifest.json"):
            shutil.copy2(args.out / FINAL / f, BUNDLED_ADAPTER / f)
        # peft records the local cache path of the base; the shipped copy names the model instead.
        config = json.loads((args.out / FINAL / "adapter_config.json").read_text())
        config["base_model_name_or_path"] = "google/gemma-3-270m"
        (BUNDLED_ADAPTER / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
        print(f"installed {args.out / FINAL} -> {BUNDLED_ADAPTER}")


if __name__ == "__main__":
    main()
