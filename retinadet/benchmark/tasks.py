"""The tasks of tools/benchmark.py: time a config's model (train, eval) or count its size (flops), time its
training data loader (data), or train it with timed evaluations (time-to-accuracy); each returns the report
that tools/benchmark.py prints and writes as JSON."""
import os
from typing import Any, Dict

import torch
from torch import nn

from retinadet.config import CfgNode
from retinadet.data import build_detection_train_loader
from retinadet.engine import DefaultTrainer
from retinadet.modeling import build_model

from .config import load_config, require_registered
from .figures import compare, figures, relative_speed
from .inputs import input_batches
from .memory import PeakMemory, peak_memory_mb
from .model_size import FLOP_CONVENTION, model_size
from .options import BenchmarkError, BenchmarkOptions
from .report import load_report
from .steps import build_step
from .timing import median, quartiles, time_in_turns, time_loader
from .torchvision_reference import COMPARABLE, build_torchvision_model, check_comparable

__all__ = ["benchmark_data", "benchmark_model", "build_models", "run_benchmark", "run_time_to_accuracy_task"]


def build_models(cfg: CfgNode, options: BenchmarkOptions) -> Dict[str, nn.Module]:
    """{"ours": the config's model, "torchvision": its counterpart (with compare_torchvision)}, seeded with
    SEED; ours built as DefaultTrainer does for the train task (no MODEL.WEIGHTS), else by build_model."""
    torch.manual_seed(max(cfg.SEED, 0))
    models = {"ours": DefaultTrainer.build_model(cfg) if options.task == "train" else build_model(cfg)}
    if options.compare_torchvision:
        models["torchvision"] = build_torchvision_model(cfg)
    return models


def benchmark_model(cfg: CfgNode, options: BenchmarkOptions) -> Dict[str, Any]:
    """Parameters and FLOPs, and for train and eval the timed steps, of our model (and torchvision's, the
    steps of the two alternating); returns the report's task part ("input", "image_size", "models", ...)."""
    if options.compare_torchvision:
        check_comparable(cfg)
    count = 1 if options.task == "flops" else options.warmup + options.iters
    source, size, batches = input_batches(cfg, options, count)
    models = build_models(cfg, options)
    image = None if options.no_flops else batches[0][0]["image"]
    sizes = {name: model_size(model, image) for name, model in models.items()}
    if options.task == "eval" and options.backend != ["eager"]:
        if not cfg.MODEL.WEIGHTS:  # random weights: normalised activations and distinct scores, in both models
            from .random_weights import calibrate_random_detector

            for model in models.values():
                calibrate_random_detector(model, batches[0])
        runners = backend_runners(cfg, models["ours"], options.backend, batches[0])
        sizes.update({name: sizes["ours"] for name in runners})  # the same network, run by another runtime
        models = {"ours": models["ours"], **runners, **{k: v for k, v in models.items() if k != "ours"}}
    result: Dict[str, Any] = {"input": source, "image_size": list(size) if size else None,
                              "flop_convention": FLOP_CONVENTION}
    if options.task == "flops":
        result["models"] = sizes
        return result
    device = torch.device(cfg.MODEL.DEVICE)
    steps = {name: build_step(model, cfg, options.task) for name, model in models.items()}
    runs = time_in_turns({name: (lambda i, step=step: step(batches[i])) for name, step in steps.items()},
                         options.warmup, options.iters, device=device, memory=PeakMemory(device))
    timed = batches[options.warmup:]
    images_per_iteration = sum(len(b) for b in timed) / len(timed)
    result["models"] = {name: {**figures(run, images_per_iteration), **sizes[name]} for name, run in runs.items()}
    if options.compare_torchvision:
        result["ours_over_torchvision"] = compare(result["models"]["ours"], result["models"]["torchvision"])
    if options.task == "eval" and options.backend != ["eager"]:
        result["backends"] = backend_table(result["models"], models, batches[0])
    return result


def backend_runners(cfg: CfgNode, model: nn.Module, specs, batch) -> Dict[str, nn.Module]:
    """{"ours-<spec>": ``model`` run by each --backend spec other than "eager"} (retinadet.export's
    wrap_for_inference: exported files are checked against the eager model as they are made; OpenVINO
    compiles for the batch's image sizes before timing)."""
    import copy

    from retinadet.export.inference_model import ExportedInference, wrap_for_inference

    from .options import parse_backend

    runners: Dict[str, nn.Module] = {}
    for spec in specs:
        name, precision = parse_backend(spec)
        if name == "eager" and precision == "float32":
            continue
        backend_cfg = cfg.clone()
        backend_cfg.defrost()
        backend_cfg.MODEL.INFERENCE_BACKEND, backend_cfg.MODEL.INFERENCE_PRECISION = name, precision
        base = copy.deepcopy(model) if name == "compile" else model  # compiling replaces forwards in place
        # Checked on the timed images (a flat sample image gives a random model thousands of tied scores).
        runner = wrap_for_inference(backend_cfg, base, sample_images=[item["image"].numpy() for item in batch])
        if isinstance(runner, ExportedInference):
            for item in batch:
                runner.runner.compile_for(*item["image"].shape[-2:])
        runners[f"ours-{spec}"] = runner
    return runners


def backend_table(figures_by_model: Dict[str, Any], models: Dict[str, nn.Module], batch) -> Dict[str, Any]:
    """Per model: s/image, speed over torchvision's eager model (when timed) and, for our backends, how
    their detections on ``batch`` differ from the eager model's (counts, labels, largest box and score
    differences)."""
    from retinadet.export import compare_detections

    with torch.no_grad():
        reference = models["ours"](batch)
    torchvision_time = figures_by_model.get("torchvision", {}).get("s_per_image")
    table: Dict[str, Any] = {}
    for name, f in figures_by_model.items():
        row: Dict[str, Any] = {"s_per_image": f["s_per_image"], "peak_memory_mib": f["peak_memory_mib"],
                               "speedup_over_torchvision": torchvision_time / f["s_per_image"] if torchvision_time
                               else None}
        if name.startswith("ours"):
            with torch.no_grad():
                outputs = models[name](batch) if name != "ours" else reference
            comparisons = [compare_detections(r, o, item["image"].shape[-2:])
                           for r, o, item in zip(reference, outputs, batch)]
            row["same_count_and_labels"] = all(c.eager_count == c.exported_count and c.labels_equal
                                               for c in comparisons)
            row["max_box_diff"] = max(c.max_box_diff for c in comparisons)
            row["max_score_diff"] = max(c.max_score_diff for c in comparisons)
            row["detections"] = sum(c.exported_count for c in comparisons)
        table[name] = row
    return table


def benchmark_data(cfg: CfgNode, options: BenchmarkOptions) -> Dict[str, Any]:
    """Time ``iters`` batches of the training loader after ``warmup``; returns the report's task part.

    Rates are over the whole timed span (the loader's workers prefetch, so single batches vary)."""
    if options.compare_torchvision:
        raise BenchmarkError("--compare-torchvision applies to --task train, eval and flops.")
    require_registered(cfg, "TRAIN", "--task data")
    batches = iter(build_detection_train_loader(cfg))
    timing = time_loader(batches, options.warmup, options.iters)
    del batches  # stops the loader's workers
    return {"input": "dataset", "datasets": list(cfg.DATASETS.TRAIN), "data": {
        "batches_per_s": timing.batches_per_s,
        "images_per_s": timing.items_per_s,
        "images_per_batch": timing.items / options.iters,
        "s_per_batch": median(timing.times),
        "s_per_batch_iqr": list(quartiles(timing.times)),
        "peak_memory_mib": peak_memory_mb(),
        "times": timing.times,
    }}


def run_benchmark(options: BenchmarkOptions) -> Dict[str, Any]:
    """Run the train, eval, flops or data task of ``options``; returns the report: the run's settings
    (config file, task, overrides, versions, device, threads, iterations, load average before and after),
    the task's figures and, with ``relative_to``, the speed relative to that earlier report. BenchmarkError
    for a request it cannot serve."""
    if options.task == "time-to-accuracy":
        raise BenchmarkError("run_benchmark runs train, eval, flops and data; time-to-accuracy is "
                             "run_time_to_accuracy_task.")
    cfg = load_config(options.config_file, options.opts, options.device)
    other = load_report(options.relative_to, options.task) if options.relative_to else None
    load_before = os.getloadavg()[0]
    result = benchmark_data(cfg, options) if options.task == "data" else benchmark_model(cfg, options)
    device = torch.device(cfg.MODEL.DEVICE)
    torchvision_version = torchvision_model = None
    if options.compare_torchvision:
        import torchvision

        torchvision_version = torchvision.__version__
        torchvision_model = COMPARABLE[cfg.MODEL.META_ARCHITECTURE][0]
    report = {
        "config_file": options.config_file,
        "task": options.task,
        "opts": list(options.opts),
        "torch": torch.__version__,
        "torchvision": torchvision_version,
        "torchvision_model": torchvision_model,
        "meta_architecture": cfg.MODEL.META_ARCHITECTURE,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "iters": options.iters,
        "warmup": options.warmup,
        "load_average": {"before": load_before, "after": os.getloadavg()[0]},
        **result,
    }
    if other is not None:
        report["relative"] = relative_speed(report, other, options.relative_to)
    return report


def run_time_to_accuracy_task(options: BenchmarkOptions) -> Dict[str, Any]:
    """Train the config as tools/train_net.py would, evaluating DATASETS.TEST every ``interval`` minutes of
    training (``minutes``: the training budget, None for the whole schedule); returns the report of
    retinadet.experiments.time_to_accuracy, which also writes OUTPUT_DIR/time_to_accuracy.json and .png.
    BenchmarkError for bad minutes, options of the other tasks, or a config without DATASETS.TEST."""
    from retinadet.engine.defaults import default_setup
    from retinadet.experiments.time_to_accuracy import run_time_to_accuracy

    if options.interval <= 0 or (options.minutes is not None and options.minutes <= 0):
        raise BenchmarkError(f"--interval and --minutes must be positive; got {options.interval}, {options.minutes}.")
    if options.compare_torchvision or options.relative_to:
        raise BenchmarkError("--compare-torchvision and --relative-to apply to --task train and eval.")
    cfg = load_config(options.config_file, options.opts, options.device)
    if not cfg.DATASETS.TEST:
        raise BenchmarkError(f"--task time-to-accuracy evaluates on DATASETS.TEST; {options.config_file} has none.")
    default_setup(cfg)
    return run_time_to_accuracy(cfg, options.interval, options.minutes, config_file=options.config_file)
