#!/usr/bin/env python
"""FSDD connected digits, end to end: build data, train a tiny model from scratch, test on an unseen speaker.

    python recipes/fsdd_digits/run.py                       # full recipe (~15 min on 2 CPU cores)
    python recipes/fsdd_digits/run.py --install-default     # ... and ship the model as nue_core/default_model
    python recipes/fsdd_digits/run.py --set max_steps=20    # any TrainConfig override (smoke run)

FSDD is read from --fsdd, $NUE_FSDD, or ../shared/data/fsdd beside the repository. Synthetic
training voices need espeak-ng (apt install espeak-ng), or pass --synthetic-count 0.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import data  # noqa: E402  (the recipe's own module, beside this file)

REPO = HERE.parents[1]
COUNTS = {"train": 3000, "valid": 150, "test": 300}
SYNTHETIC_COUNT = 3000  # utterances of eSpeak NG voices added to training (see synthetic.py)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fsdd", type=Path, default=data.default_fsdd(), help="FSDD folder (with recordings/)")
    p.add_argument("--work", type=Path, default=REPO / "runs" / "fsdd_digits", help="data, run folder, results")
    p.add_argument("--test-speaker", default="yweweler", choices=data.SPEAKERS, help="speaker held out for test")
    p.add_argument("--train-count", type=int, default=COUNTS["train"])
    p.add_argument("--valid-count", type=int, default=COUNTS["valid"])
    p.add_argument("--test-count", type=int, default=COUNTS["test"])
    p.add_argument("--synthetic-count", type=int, default=SYNTHETIC_COUNT,
                   help="training utterances of synthetic eSpeak NG voices (0: real voices only)")
    p.add_argument("--synthetic-voices", type=int, default=None, help="how many synthetic voices (default: all)")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="TrainConfig override key=value (model.KEY=value: model config)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --work")
    p.add_argument("--overwrite", action="store_true", help="delete the previous run in --work and train again")
    p.add_argument("--install-default", action="store_true", help="copy the model to nue_core/default_model")
    p.add_argument("--prepare", action="store_true", help="only build the data, tokenizer and model.yaml (e.g. for ablation.yaml)")
    return p.parse_args(argv)


def prepare(args: argparse.Namespace) -> tuple[dict[str, Path], Path]:
    """Data manifests and the model YAML (with the tokenizer beside it) in the work folder."""
    counts = {"train": args.train_count, "valid": args.valid_count, "test": args.test_count}
    manifests = data.build_all(args.fsdd, args.work, args.test_speaker, counts, synthetic=args.synthetic_count,
                               voices=args.synthetic_voices)
    data.train_tokenizer(args.work / "tokenizer")
    model_yaml = args.work / "model.yaml"
    shutil.copyfile(HERE / "model.yaml", model_yaml)
    return manifests, model_yaml


def test(model_dir: Path, manifest: Path) -> dict[str, float]:
    """Greedy CER/WER of a saved model on the held-out speaker."""
    from nue_core.checkpoint import load_model_folder
    from nue_core.generation import GenerationConfig
    from nue_core.train.data import UtteranceSet
    from nue_core.train.validation import validate

    model = load_model_folder(model_dir)
    data_set, _ = UtteranceSet.from_manifest(manifest, model.sample_rate, 16.0, skip_bad=False)
    result = validate(model, data_set, 60.0, GenerationConfig.for_model(model.config))
    return {"cer": result.cer, "wer": result.wer, "items": result.items, "examples": result.examples}


def main(argv: list[str] | None = None) -> None:
    from nue_core.overrides import parse_override, set_dotted
    from nue_core.train.config import TrainConfig
    from nue_core.train.run import train

    args = parse_args(argv)
    manifests, model_yaml = prepare(args)
    if args.prepare:
        print(f"prepared {args.work}: data, tokenizer and model.yaml")
        return
    settings, model_overrides = TrainConfig.load(HERE / "train.yaml").model_dump(), {}
    for text in args.overrides:
        key, value = parse_override(text)
        if key.startswith("model."):  # as in `nue train`: model.KEY overrides the model config
            model_overrides[key[len("model."):]] = value
        else:
            settings = set_dotted(settings, key, value)
    config = TrainConfig.from_dict(settings, source="recipe train settings")
    start = time.time()
    run_dir = args.work / "run"
    result = train(model_yaml, manifests["train"], manifests["valid"], run_dir, config, resume=args.resume,
                   model_overrides=model_overrides, overwrite=args.overwrite)
    minutes = (time.time() - start) / 60
    if result.status != "finished":
        print(f"stopped at step {result.step}; continue with: python {Path(__file__).name} --resume")
        return
    model_dir = result.best_dir or result.final_dir
    scores = test(model_dir, manifests["test"])
    report = {"test_speaker": args.test_speaker, "train_minutes": round(minutes, 2), "steps": result.step,
              "model": str(model_dir), **scores}
    (args.work / "results.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(f"held-out speaker {args.test_speaker}: WER {scores['wer']:.2%}  CER {scores['cer']:.2%} "
          f"({scores['items']} utterances); training took {minutes:.1f} min")
    if args.install_default:
        from install_default import install

        install(model_dir, manifests["test"], REPO / "nue_core" / "default_model", report)


if __name__ == "__main__":
    main()
