"""``procedge eval images``: magnetic-tile style defect classification and segmentation,
Keras float vs the int8 edge bundle (LiteRT), side by side.

Trains a classifier and a U-Net on the training part of ``--root`` (a stratified validation
split stops training), evaluates on ``--test-root`` when given, else on the validation split
(then the figures are optimistic: that split also chose the stopping epoch). Edge figures come
from the bundles through LiteRT; the per-image latency is the gateway's whole path (JPEG bytes →
decode → resize → classifier + segmenter → regions) on one thread.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from converters.build import build_bundle
from converters.tflite import ConversionError, convert
from edge_runtime.bundle import Bundle, ImageSpec, RunRecord, TrainingInfo
from edge_runtime.imaging import ImageLimits, ImagePipeline, QcSettings, decode_image
from edge_runtime.interpreter import EdgeModel
from evaluation.results import write_results
from training.budget import BACKUP_DIR
from training.images import data as imdata
from training.images import explain
from training.images.metrics import (
    classification_metrics,
    mask_nok_metrics,
    segmentation_metrics,
)
from training.images.train import ImageTrainConfig, Split, train_image_model
from training.progress import progress

log = logging.getLogger(__name__)
METRIC_KEYS = ("auroc", "balanced_accuracy", "accuracy_6class", "iou", "dice",
               "edge_ms_per_image")


def parse_args(argv: list[str]) -> argparse.Namespace:
    default_root = Path(os.environ.get("PROCEDGE_DATA", "../shared/data")) / "magnetic_tile"
    p = argparse.ArgumentParser(prog="procedge eval images", description=__doc__)
    p.add_argument("--root", type=Path, default=default_root, help="training folder")
    p.add_argument("--test-root", type=Path, help="test folder (same layout); default: val")
    p.add_argument("--json", type=Path,
                   help='write {"results": [...], "settings": {...}} here')
    p.add_argument("--out", type=Path, default=Path("artifacts/images/eval"))
    p.add_argument("--size", type=int, default=128, help="square model input, pixels")
    p.add_argument("--classifier", default="resnet", help="small_cnn | resnet | mobilenet")
    p.add_argument("--classifier-width", type=int, default=16)
    p.add_argument("--segmenter", default="unet", help="unet | none")
    p.add_argument("--segmenter-width", type=int, default=8)
    p.add_argument("--segmenter-patch", type=int, default=64,
                   help="U-Net trains on crops this size near defects (0 = whole images): "
                        "about 3x the epochs per minute")
    p.add_argument("--epochs", type=int, default=200,
                   help="from scratch, the classifier needed ~200 (runs G, H: docs/images.md)")
    p.add_argument("--segmenter-epochs", type=int, default=300,
                   help="U-Net epoch budget; 0 = --epochs (it needed ~300: run H)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="wall-clock limit per model (default none: the epoch budgets alone, "
                        "so the same models on any machine); a model it stops is reported "
                        "truncated")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run: a model trained to its end under --out "
                        "is kept, an interrupted fit continues from its checkpoint")
    p.add_argument("--schedule", choices=("cosine", "plateau"), default="cosine",
                   help="learning rate: cosine decay over the budget, or cut on plateaus")
    p.add_argument("--mask-weight", type=float, default=0.0,
                   help="classifier: weight of the auxiliary defect-mask loss (0 = labels only)")
    p.add_argument("--precision", choices=("auto", "float32", "mixed_bfloat16"), default="auto",
                   help="training compute; auto = mixed_bfloat16 on a GPU of compute "
                        "capability >= 8 or a CPU with bfloat16 instructions (about 2x the "
                        "steps per minute on such a CPU)")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--latency-size", type=int, default=256, help="0 = skip that check")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    args.out.mkdir(parents=True, exist_ok=True)
    everything = imdata.scan(args.root, split="train")
    names = everything.class_names
    train_idx, val_idx = imdata.stratified_split(everything.labels, args.val_fraction, args.seed)
    spec = ImageSpec(kind="classifier", height=args.size, width=args.size,
                     class_names=names, ok_class=imdata.ok_class(names))
    train_set, val_set = everything.subset(train_idx), everything.subset(val_idx)
    test_set = (imdata.scan(args.test_root, split=None, class_names=names)
                if args.test_root else val_set)
    spec, train, val, test = imdata.load_splits(spec, train_set, val_set, test_set,
                                                args.test_root is not None)
    print(f"images: train {len(train.x)}, val {len(val.x)}, "
          f"{'test' if args.test_root else 'evaluated on val'} {len(test.x)}; "
          f"input {args.size}x{args.size}, mean {spec.mean:.3f} std {spec.std:.3f}")
    result = {"benchmark": "magnetic_tile", "root": str(args.root),
              "test": str(args.test_root or "validation split"), "size": args.size,
              "epochs": args.epochs, "segmenter_epochs": args.segmenter_epochs,
              "max_minutes": args.max_minutes, "schedule": args.schedule, "seed": args.seed,
              "training": {}}
    models, bundles, widths = {}, {}, {}
    fingerprint = imdata.fingerprint(train_set)
    roles = [("classifier", args.classifier, args.classifier_width)]
    if args.segmenter != "none":
        roles.append(("segmenter", args.segmenter, args.segmenter_width))
    for role, family, width in progress(roles, "image models", unit="model"):
        patch = args.segmenter_patch if role == "segmenter" else 0
        config = ImageTrainConfig(name=f"tile_{role}", family=family, model={"width": width},
                                  epochs=_epochs(args, role), max_minutes=args.max_minutes,
                                  patch=patch,
                                  schedule=args.schedule, precision=_precision(args.precision),
                                  mask_weight=args.mask_weight if role == "classifier" else 0.0,
                                  seed=args.seed, output_dir=args.out / "runs",
                                  resume=args.resume)
        if family == "mobilenet":
            config.model = {}
            print("mobilenet: training from scratch (no local ImageNet weights given)")
        run_dir = _finished(config) if args.resume else None
        if run_dir is None:
            print(f"{role} {family}: training, up to {config.epochs} epochs"
                  + (f" or {args.max_minutes:g} min" if args.max_minutes else ""), flush=True)
            run_dir = train_image_model(config, spec, train, val, test, fingerprint)
        else:
            print(f"{role} {family}: --resume keeps the finished run {run_dir}")
        result["training"][role] = RunRecord.load(run_dir).training.model_dump()
        models[role], widths[role] = run_dir, width
        bundles[role], result[f"{role}_gate"] = _bundle(run_dir, args.out / "bundles")
        print(f"{role} {family}: trained → {run_dir}; int8 gate: {result[f'{role}_gate']}")
    print("evaluating the Keras and the int8 LiteRT models on the test images", flush=True)
    rows = _compare(models, bundles, test, test_set, spec, args.out)
    if args.latency_size:
        print(f"measuring LiteRT latency at {args.latency_size}x{args.latency_size}",
              flush=True)
        result["latency_256"] = _latency_at(models, widths, args.latency_size, args.out)
    _print(rows, result)
    return write_results(args.json, rows, result)


def _finished(config: ImageTrainConfig) -> Path | None:
    """With --resume: the run directory of a fit that ran to its end with this budget (its
    record is written and no checkpoint is left), else None."""
    run_dir = Path(config.output_dir) / config.name
    try:
        record = RunRecord.load(run_dir)
    except (FileNotFoundError, ValueError):
        return None
    done = (record.training is not None and record.training.epochs_budget == config.epochs
            and not (run_dir / BACKUP_DIR).exists() and (run_dir / "model.keras").is_file())
    return run_dir if done else None


def _epochs(args: argparse.Namespace, role: str) -> int:
    if role == "segmenter" and args.segmenter_epochs:
        return args.segmenter_epochs
    return args.epochs


def _precision(choice: str) -> str:
    """``auto``: bfloat16 where it is computed natively: a GPU of compute capability 8 or
    newer (Ampere, Hopper: tensor cores, no loss scaling needed), or a CPU with AVX512-BF16
    or AMX; an emulated bfloat16 would be slower than float32."""
    if choice != "auto":
        return choice
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        if capability and capability >= (8, 0):
            return "mixed_bfloat16"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "float32"
    return "mixed_bfloat16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "float32"


def _bundle(run_dir: Path, out: Path) -> tuple[Path, str]:
    """The int8 bundle if it passes the parity gate; if not, one built past the gate (budget
    1.0) so the int8 figures are still reported — with the gate's verdict beside them."""
    try:
        return build_bundle(run_dir, out, "int8").root, "passed"
    except ConversionError as exc:
        bundle = build_bundle(run_dir, out / "ungated", "int8", budget=1.0)
        return bundle.root, f"FAILED ({str(exc).splitlines()[0]})"


def _compare(models, bundles, test: Split, test_set, spec: ImageSpec, out: Path) -> list[dict]:
    """Rows of model ``classifier+segmenter`` (the edge verdict's figures), and, with a
    segmenter, rows of model ``segmenter-mask``: OK/NOK scored from the mask alone."""
    import keras

    rows = {"keras-fp32": {}, "edge-int8": {}}  # variant-mode: file names and keys
    mask_rows = {}
    ok = spec.class_names.index(spec.ok_class)
    for role, run_dir in models.items():
        model = keras.models.load_model(run_dir / "model.keras", compile=False)
        ref = model.predict(test.x, verbose=0, batch_size=32)
        got = EdgeModel(bundles[role] / "model.tflite").predict(test.x)[0]
        if role == "classifier":
            for variant, probs in (("keras-fp32", ref), ("edge-int8", got)):
                m = classification_metrics(test.labels, probs, ok, spec.class_names)
                m["accuracy_6class"] = m.pop("accuracy")
                rows[variant] |= m
                explain.save_confusion_matrix(test.labels, probs.argmax(1), spec.class_names,
                                              out / f"confusion_{variant}.png", variant)
            rows["edge-int8"]["agreement_class"] = float(np.mean(ref.argmax(1) == got.argmax(1)))
            explain.save_gradcam_overlays(model, test.x, test.labels, ref, spec.class_names,
                                          out / "gradcam")
        else:
            for variant, probs in (("keras-fp32", ref), ("edge-int8", got)):
                m = segmentation_metrics(test.masks, probs, 0.5)
                rows[variant] |= {"iou": m["iou"], "dice": m["dice"],
                                  "clean_on_free": m["clean_on_free"]}
                mask_rows[variant] = mask_nok_metrics(test.labels, probs, ok)
            explain.save_segmentation_overlays(test.x, test.masks, ref, out / "segmentation")
    rows["edge-int8"]["edge_ms_per_image"] = _edge_latency(bundles, test_set)
    rows["keras-fp32"]["edge_ms_per_image"] = float("nan")
    return ([_row("+".join(models), k, v) for k, v in rows.items()]
            + [_row("segmenter-mask", k, v) for k, v in mask_rows.items()])


def _row(model: str, key: str, metrics: dict) -> dict:
    """A result row of the common format: ``keras-fp32`` → variant keras, mode float32."""
    variant, mode = key.split("-")
    return {"model": model, "variant": variant, "mode": {"fp32": "float32"}.get(mode, mode),
            **metrics}


def _edge_latency(bundles: dict[str, Path], test_set) -> float:
    """Median ms per image of the gateway's whole path, one thread, over the test files."""
    loaded = {role: Bundle.load(path) for role, path in bundles.items()}
    pipeline = ImagePipeline("eval", loaded.get("classifier"), loaded.get("segmenter"),
                             QcSettings(limits=ImageLimits()))
    times = []
    for item in progress(test_set.items[:200], "gateway latency", unit="image"):
        payload = item.image.read_bytes()
        start = time.perf_counter()
        pipeline.inspect(decode_image(payload, 1, pipeline.settings.limits))
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def _latency_at(models: dict[str, Path], widths: dict[str, int], size: int, out: Path
                ) -> dict[str, float]:
    """Single-image LiteRT int8 latency at ``size``×``size`` (trained weights; the models are
    fully convolutional), one thread, median of 50 invokes."""
    import keras

    from training.registry import get_family

    result = {}
    for role, run_dir in models.items():
        trained = keras.models.load_model(run_dir / "model.keras", compile=False)
        record = RunRecord.load(run_dir)
        family = get_family(record.family)
        shape = (size, size, 1)
        kwargs = {"width": widths[role]} if record.family != "mobilenet" else {}
        big = (family.build(shape, len(record.image.class_names), **kwargs)
               if role == "classifier" else family.build(shape, **kwargs))
        big.set_weights(trained.get_weights())
        with tempfile.TemporaryDirectory() as tmp:
            keras_path = Path(tmp) / "big.keras"
            big.save(keras_path)
            rep = Path(tmp) / "rep.npz"
            rng = np.random.default_rng(0)
            np.savez(rep, x=rng.normal(size=(32, *shape)).astype(np.float32))
            tfl = out / f"{role}_{size}_int8.tflite"
            convert(keras_path, tfl, "int8", representative=rep)
        model = EdgeModel(tfl, num_threads=1)
        x = np.random.default_rng(1).normal(size=(1, *shape)).astype(np.float32)
        for _ in range(5):
            model.predict(x)
        times = []
        for _ in range(50):
            start = time.perf_counter()
            model.predict(x)
            times.append(1000 * (time.perf_counter() - start))
        result[f"{role}_ms"] = statistics.median(times)
    result["total_ms"] = sum(result.values())
    return result


def _print(rows: list[dict], result: dict) -> None:
    keys = sorted({k for r in rows for k in r} - {"model", "variant", "mode"},
                  key=lambda k: (k not in METRIC_KEYS, METRIC_KEYS.index(k)
                                 if k in METRIC_KEYS else 0, k))
    titles = [f"{r['variant']}-{r['mode']}" if r["model"] == rows[0]["model"]
              else f"mask:{r['variant']}" for r in rows]
    print(f"\n{'metric':28s}" + "".join(f"{t:>16s}" for t in titles))
    for k in keys:
        print(f"{k:28s}" + "".join(f"{r.get(k, float('nan')):16.4f}" for r in rows))
    if len(rows) > 2:
        print("mask: OK/NOK from the segmenter alone (NOK score = largest pixel probability)")
    for role in ("classifier", "segmenter"):
        if f"{role}_gate" in result:
            print(f"int8 parity gate ({role}): {result[f'{role}_gate']}")
    if "latency_256" in result:
        lat = result["latency_256"]
        print(f"LiteRT int8, 1 thread, {result.get('size')}→256x256 weights: "
              + ", ".join(f"{k} {v:.2f}" for k, v in lat.items()))
    for role, info in result["training"].items():
        print(TrainingInfo(**info).summary(role))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
