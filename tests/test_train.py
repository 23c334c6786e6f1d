"""rtfuse_train: data and split, the trainer (resume, CSV, DDP) and stage 1 on both DAGM backends."""

from __future__ import annotations

import csv
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

from rtfuse.checkpoint import load_checkpoint
from rtfuse.degrade import CLASSES, class_targets
from rtfuse.errors import RtfuseError
from rtfuse_train.cli import main as train_main
from rtfuse_train.data import (DegradedPairs, SceneMix, SourcePair, kinds_by_class, load_pair_folder,
                               load_video_pair, resize_chw, split_fraction, split_sources)
from rtfuse_train.stage1 import Stage1, Stage1Options, build_model, confusion_matrix, make_trainer, severity_accuracy
from rtfuse_train.trainer import ShardedSampler, TrainConfig, Trainer, seed_everything

TINY_VIT = dict(layers=2, width=64, patch_size=16, image_size=32)


@pytest.fixture(scope="module")
def msrs(shared_data):
    return load_pair_folder(shared_data / "msrs", short_side=96)


@pytest.fixture(scope="module")
def clip_frames(shared_data):
    m2vd = shared_data / "video" / "m2vd"
    return load_video_pair(m2vd / "vi" / "0111_1716.mp4", m2vd / "ir" / "0111_1716.mp4", every=30, short_side=96)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------- data


def test_video_frames_are_cached_registered_pairs(clip_frames):
    assert len(clip_frames) == 6  # 151 frames, every 30th
    assert all(s.group == "m2vd/0111_1716" for s in clip_frames)
    assert [s.name for s in clip_frames][:2] == ["m2vd/0111_1716#0000", "m2vd/0111_1716#0030"]
    for s in clip_frames:
        assert s.vis.shape == (96, 128, 3) and s.ir.shape == (96, 128) and s.ir.dtype == np.uint8


def test_split_by_source_has_no_overlap_and_is_stable(msrs, clip_frames):
    sources = msrs + clip_frames
    train, test = split_sources(sources, 0.3)
    assert train and test and len(train) + len(test) == len(sources)
    assert not {s.group for s in train} & {s.group for s in test}
    assert not {s.name for s in train} & {s.name for s in test}
    clip_side = {s.name in {t.name for t in test} for s in clip_frames}
    assert len(clip_side) == 1, "frames of one clip must all land in the same split"
    # Adding or removing sources never moves the others (the split is a hash of the group name).
    sub_train, sub_test = split_sources(msrs[:7], 0.3)
    assert {s.name for s in sub_test} == {s.name for s in test if s in msrs[:7]}
    assert split_fraction("roadscene/FLIR_00006") == split_fraction("roadscene/FLIR_00006")
    with pytest.raises(RtfuseError, match="duplicate"):
        split_sources(msrs + msrs[:1])


def test_degraded_samples_are_pure_functions_of_seed_epoch_index(msrs):
    a = DegradedPairs(msrs, 64, 48, seed=3)
    b = DegradedPairs(msrs, 64, 48, seed=3)
    for i in (0, 5, 17):
        x, y = a[i], b[i]
        assert x["kind"] == y["kind"] and torch.equal(x["vis"], y["vis"]) and torch.equal(x["ir"], y["ir"])
    a.set_epoch(1)
    assert not torch.equal(a[0]["clean_vis"], b[0]["clean_vis"])
    kinds = kinds_by_class()
    assert kinds["noise"] == ("noise",)  # blur is not one of the six recognised classes
    for i in range(48):
        item = b[i]
        assert item["vis"].shape == (3, 64, 64) and item["ir"].shape == (1, 64, 64)
        assert item["kind"] in kinds[CLASSES[item["label"]]]
        if item["kind"] == "clean":
            assert item["severity"] == 0 and torch.equal(item["vis"], item["clean_vis"])
        else:
            assert 0.2 <= float(item["severity"]) <= 1.0
        if item["kind"] not in ("clean", "blur"):  # defocus under half a pixel is the identity on 64 px crops
            assert not torch.equal(item["vis"], item["clean_vis"]) or not torch.equal(item["ir"], item["clean_ir"])


def test_scene_and_camera_options_leave_the_default_stream_alone(msrs):
    """The options add scenes and cameras the runtime meets (night fog, night scenes, a mono visible
    camera, a dark thermal one) without changing the samples of runs that do not ask for them."""
    plain = DegradedPairs(msrs, 64, 24, seed=3, native=True)
    # kinds and severities these 24 samples had before the options existed (recorded at 83862c5):
    # any extra random draw in between would shift them
    assert [plain[i]["kind"] for i in range(8)] == ["haze", "noise", "noise", "noise", "noise", "clean", "low_light",
                                                    "low_light"]
    assert [round(float(plain[i]["severity"]), 4) for i in range(16)] == [
        0.6657, 0.4425, 0.8248, 0.8836, 0.7437, 0.0, 0.8663, 0.9143, 0.0, 0.673, 0.0, 0.912, 0.0, 0.0, 0.8363, 0.9827]
    both = DegradedPairs(msrs, 64, 24, seed=3, native=True, scenes=SceneMix(composites=1.0, gray_visible=1.0))
    for i in range(24):
        item = both[i]
        assert item["kind"] in ("night_fog", "rainy_night", "hazy_glare")
        assert item["label"] == int(np.argmax(class_targets([(item["kind"], 1.0)])))
        for key in ("vis", "clean_vis"):  # monochrome: three equal channels, the luma of the colour one
            assert torch.equal(item[key][0], item[key][1]) and torch.equal(item[key][1], item[key][2])
        assert not torch.equal(item["vis"], item["clean_vis"])
    colour = plain[0]["clean_vis"]
    mono = DegradedPairs(msrs, 64, 24, seed=3, native=True, scenes=SceneMix(gray_visible=1.0))[0]["clean_vis"]
    assert torch.allclose(mono[0], 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2], atol=1e-3)
    night = DegradedPairs(msrs, 64, 24, seed=3, native=True, scenes=SceneMix(night=1.0))
    for i in range(8):  # the same crops and degradations, on a darker clean visible, the infrared as it was
        item = night[i]
        assert item["kind"] == plain[i]["kind"] and torch.equal(item["clean_ir"], plain[i]["clean_ir"])
        assert float(item["clean_vis"].mean()) < 0.8 * float(plain[i]["clean_vis"].mean())
        # DAGM's label names the degradation; a night scene left clean was made by low_light
        expected = "low_light" if item["kind"] == "clean" else CLASSES[plain[i]["label"]]
        assert CLASSES[item["label"]] == expected and (item["kind"] == "clean") == (plain[i]["label"] == 0)
        if item["kind"] == "clean":
            assert 0.3 <= float(item["severity"]) <= 0.8
    assert "clean" in {night[i]["kind"] for i in range(8)}, "the next check needs a night scene left clean"
    as_clean = DegradedPairs(msrs, 64, 24, seed=3, native=True, scenes=SceneMix(night=1.0), night_label="clean")
    for i in range(8):  # the same night scenes; one left clean is labelled clean
        item = as_clean[i]
        assert torch.equal(item["vis"], night[i]["vis"])
        assert item["label"] == (0 if item["kind"] == "clean" else night[i]["label"])
    dark = DegradedPairs(msrs, 64, 24, seed=3, native=True, scenes=SceneMix(dark_infrared=1.0))
    for i in range(8):  # the same visible crops, the infrared at a lower level
        item = dark[i]
        assert item["kind"] == plain[i]["kind"] and torch.equal(item["clean_vis"], plain[i]["clean_vis"])
        bright = plain[i]["clean_ir"] > 0.05
        gain = item["clean_ir"][bright] / plain[i]["clean_ir"][bright]
        assert 0.15 <= float(gain.min()) and float(gain.max()) <= 0.6 and float(gain.max() - gain.min()) < 1e-5
    with pytest.raises(RtfuseError, match="share"):
        SceneMix(composites=1.5)
    with pytest.raises(RtfuseError, match="night_label"):
        DegradedPairs(msrs, 64, 4, night_label="dark")


def test_balanced_evaluation_set_covers_every_class_per_source(msrs):
    ds = DegradedPairs(msrs[:3], 32, 3 * len(CLASSES) * 2, seed=0, balanced=True)
    seen = {(ds[i]["source"], ds[i]["label"]) for i in range(len(ds))}
    assert seen == {(s, c) for s in range(3) for c in range(len(CLASSES))}


def test_sharded_sampler_deals_the_global_batches_to_ranks():
    single = list(ShardedSampler(40, 8, seed=1))
    r0, r1 = list(ShardedSampler(40, 8, 1, 0, 2)), list(ShardedSampler(40, 8, 1, 1, 2))
    assert len(single) == 40 and len(r0) == len(r1) == 20
    for k in range(5):
        assert sorted(single[8 * k : 8 * k + 8]) == sorted(r0[4 * k : 4 * k + 4] + r1[4 * k : 4 * k + 4])
    with pytest.raises(RtfuseError, match="divisible"):
        ShardedSampler(40, 7, 0, 0, 2)


def test_metrics_helpers():
    y, p = np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2])
    assert confusion_matrix(y, p, 3).tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    rows = severity_accuracy(y, p, np.array([0.0, 0.3, 0.9, 1.0]), [0.2, 0.6, 1.0])
    assert rows == [("clean", 1, 1.0), ("0.20-0.60", 1, 1.0), ("0.60-1.00", 2, 0.5)]


# ----------------------------------------------------------------------------- training


def _overfit(opts: Stage1Options, sources, tmp_path: Path, steps: int, lr: float = 3e-3) -> list[float]:
    """Train on one fixed batch of 16 (a Subset has no set_epoch) and return the step losses."""
    cfg = TrainConfig(run_dir=str(tmp_path / "run"), epochs=steps, batch_size=16, lr=lr, warmup_steps=1,
                      workers=0, progress=False)
    seed_everything(0)
    model = build_model(opts)
    data = Subset(DegradedPairs(sources, 64, 16, seed=0), range(16))
    trainer = Trainer(model, Stage1(opts.out), data, None, cfg)
    trainer.fit()
    return [float(r["loss"]) for r in _rows(tmp_path / "run" / "steps.csv")]


def test_stage1_lite_loss_decreases(msrs, tmp_path):
    losses = _overfit(Stage1Options(out=tmp_path / "lite.pt"), msrs, tmp_path, steps=10, lr=1e-2)
    assert len(losses) == 10
    assert np.mean(losses[-2:]) < 0.8 * np.mean(losses[:2]), losses
    model, meta = load_checkpoint(tmp_path / "lite.pt")
    assert meta["stage"] == 1 and model.cfg.encoder == "lite"


def test_stage1_clip_tiny_vit_loss_decreases(msrs, tmp_path):
    opts = Stage1Options(out=tmp_path / "clip.pt", encoder="clip", clip_vision_overrides=TINY_VIT)
    losses = _overfit(opts, msrs, tmp_path, steps=6)
    assert np.mean(losses[-2:]) < 0.8 * np.mean(losses[:2]), losses


def test_stage1_cli_checkpoint_and_resume(shared_data, tmp_path, capsys):
    out, run_dir = tmp_path / "dagm.pt", tmp_path / "run"
    common = ["stage1", "--pairs", str(shared_data / "msrs"), "--out", str(out), "--run-dir", str(run_dir),
              "--cache-side", "96", "--size", "64", "--samples-per-epoch", "32", "--batch-size", "16",
              "--eval-repeats", "1", "--test-fraction", "0.3", "--workers", "0", "--no-progress",
              "--night", "0.25", "--dark-infrared", "0.5", "--night-label", "clean"]
    assert train_main([*common, "--epochs", "2"]) == 0
    printed = capsys.readouterr().out
    assert "top-1 accuracy" in printed and "true \\ pred" in printed and "0.80-1.00" in printed
    first, meta = load_checkpoint(out)
    assert meta["stage"] == 1 and len(meta["confusion"]) == len(CLASSES) and 0 <= meta["test_accuracy"] <= 1
    assert meta["test_sources"] > 0 and meta["train_sources"] > 0
    assert meta["night"] == 0.25 and meta["dark_infrared"] == 0.5 and meta["night_label"] == "clean"
    state = torch.load(run_dir / "state.pt", weights_only=True)
    assert (state["epoch"], state["step"]) == (2, 4)
    for k, v in first.dagm.state_dict().items():
        assert torch.equal(v, state["model"][f"dagm.{k}"])

    assert train_main([*common, "--epochs", "3", "--resume"]) == 0
    assert "trained 1 epochs (6 steps)" in capsys.readouterr().out
    assert [int(r["step"]) for r in _rows(run_dir / "steps.csv")] == [1, 2, 3, 4, 5, 6]
    assert [int(r["epoch"]) for r in _rows(run_dir / "epochs.csv")] == [1, 2, 3]
    resumed, _ = load_checkpoint(out)
    assert any(not torch.equal(a, b) for a, b in zip(first.dagm.parameters(), resumed.dagm.parameters()))

    assert train_main([*common, "--epochs", "3", "--resume", "--batch-size", "8"]) == 2
    assert "must keep --batch-size 16" in capsys.readouterr().err


# ----------------------------------------------------------------------------- DDP


def _one_step_opts(out: Path) -> Stage1Options:
    # SGD, not Adam: Adam's first step is ~lr * sign(grad) and would amplify float round-off of
    # near-zero gradients far past the tolerance. BatchNorm frozen: per-process batch statistics
    # differ from the combined batch's by design (SyncBatchNorm, the cure, has no CPU kernel).
    cfg = TrainConfig(run_dir=str(out.with_suffix("")), epochs=1, batch_size=8, lr=0.5, optimizer="sgd",
                      warmup_steps=1, workers=0, batchnorm="frozen", progress=False)
    return Stage1Options(out=out, size=64, samples_per_epoch=8, eval_repeats=1, test_fraction=0.3, train=cfg)


def _ddp_worker(rank: int, world: int, port: int, out: str, sources) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    trainer, _ = make_trainer(_one_step_opts(Path(out)), sources)
    try:
        trainer.fit()
    finally:
        trainer.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_gloo_processes_match_one_process_on_the_combined_batch(msrs, tmp_path):
    sources = msrs[:10]
    trainer, _ = make_trainer(_one_step_opts(tmp_path / "single.pt"), sources)
    initial = {k: v.clone() for k, v in trainer.model.dagm.state_dict().items()}
    trainer.fit()
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path / "ddp.pt"), sources), nprocs=2)
    single, _ = load_checkpoint(tmp_path / "single.pt")
    ddp, _ = load_checkpoint(tmp_path / "ddp.pt")
    moved = set()
    for name, a in single.dagm.state_dict().items():
        b = ddp.dagm.state_dict()[name]
        torch.testing.assert_close(b, a, rtol=0, atol=1e-5, msg=name)
        if not torch.allclose(a, initial[name], rtol=0, atol=1e-4):
            moved.add(name)
    # The step must move encoder output, MLP and head by more than the tolerance, or the
    # comparison proves nothing.
    assert {"encoder.proj.bias", "mlp.0.bias", "mlp.2.weight", "classifier.weight"} <= moved, moved


def test_native_crops_are_exact_windows_of_the_source():
    """Stage 2 trains at the source's pixel scale: the clean reference is an unresampled window."""
    rng = np.random.default_rng(0)
    vis = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    ir = rng.integers(0, 256, (40, 56), dtype=np.uint8)
    ds = DegradedPairs([SourcePair("a", "a", vis, ir)], size=32, length=4, seed=1, severity=(0.5, 1.0), native=True)
    for k in range(4):
        item = ds[k]
        clean = (item["clean_ir"][0].numpy() * 255).round().astype(np.uint8)
        found = any(
            np.array_equal(clean, window[:, ::flip])
            for y in range(40 - 32 + 1) for x in range(56 - 32 + 1) for flip in (1, -1)
            for window in [ir[y : y + 32, x : x + 32]]
        )
        assert found and item["vis"].shape == (3, 32, 32)


def test_csv_log_widens_its_header_for_new_columns(tmp_path):
    """Evaluation columns appear only on evaluated epochs; they must not be dropped."""
    from rtfuse_train.trainer import CsvLog

    log = CsvLog(tmp_path / "e.csv")
    log.write({"step": 1, "loss": 0.5})
    log.write({"step": 2, "loss": 0.4, "test_accuracy": 0.9})
    CsvLog(tmp_path / "e.csv").write({"step": 3, "loss": 0.3})
    rows = list(csv.DictReader(open(tmp_path / "e.csv")))
    assert [r["test_accuracy"] for r in rows] == ["", "0.9", ""]


def test_whole_frame_evaluation_sees_the_entire_unflipped_source(msrs):
    """Stage 1 is scored on whole frames, as the runtime plans a clip from one whole frame."""
    ds = DegradedPairs(msrs[:2], 32, 2 * len(CLASSES), seed=0, balanced=True, whole=True)
    src = msrs[0]
    item = ds[0]  # source 0, class clean
    expected = torch.from_numpy(resize_chw(np.ascontiguousarray(src.ir[None], dtype=np.float32) / 255.0, 32))
    assert item["kind"] == "clean" and torch.allclose(item["ir"], expected)


def test_stage2_cli_trains_on_a_frozen_stage1_dagm_and_packages_the_weights(shared_data, tmp_path, capsys):
    stage1, stage2, shipped = tmp_path / "dagm.pt", tmp_path / "rt.pt", tmp_path / "shipped.pt"
    data = ["--pairs", str(shared_data / "msrs"), "--test-fraction", "0.3", "--workers", "0", "--no-progress"]
    assert train_main(["stage1", *data, "--cache-side", "96", "--out", str(stage1), "--size", "64", "--samples-per-epoch", "16",
                       "--batch-size", "8", "--eval-repeats", "1", "--epochs", "1"]) == 0
    assert train_main(["stage2", *data, "--dagm", str(stage1), "--out", str(stage2), "--size", "32",
                       "--samples-per-epoch", "8", "--batch-size", "4", "--epochs", "1",
                       "--composites", "0.5", "--gray-visible", "0.25", "--night", "0.25",
                       "--dark-infrared", "0.5"]) == 0
    capsys.readouterr()
    steps = _rows(tmp_path / "rt_run" / "steps.csv")
    assert len(steps) == 2
    for term in ("pix", "grad", "recon", "pkdm", "load", "mi"):  # every loss term logged on its own
        assert all(np.isfinite(float(r[term])) for r in steps), term
    first, _ = load_checkpoint(stage1)
    trained, meta = load_checkpoint(stage2)
    assert meta["stage"] == 2 and meta["dagm"] == str(stage1)
    assert meta["composites"] == 0.5 and meta["gray_visible"] == 0.25 and meta["night"] == 0.25
    assert meta["dark_infrared"] == 0.5
    for a, b in zip(first.dagm.state_dict().values(), trained.dagm.state_dict().values()):
        assert torch.equal(a, b)  # DAGM frozen

    assert train_main(["package", str(stage2), "-o", str(shipped), "--note", "test machine"]) == 0
    assert "wrote" in capsys.readouterr().out
    packaged, card = load_checkpoint(shipped)
    assert card["storage"].startswith("float16") and card["machine"] == "test machine"
    assert card["stage1_test_accuracy"] == load_checkpoint(stage1)[1]["test_accuracy"]
    assert card["stage1_wall_s"] > 0 and card["stage2_wall_s"] > 0
    assert shipped.stat().st_size < 0.6 * stage2.stat().st_size
    for a, b in zip(trained.state_dict().values(), packaged.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-2, rtol=1e-2)
    assert train_main(["package", str(stage1), "-o", str(tmp_path / "x.pt")]) == 2
    assert "not a stage-2 checkpoint" in capsys.readouterr().err


def test_stage2_takes_only_the_dagm_from_a_stage1_checkpoint_of_another_layout(tmp_path):
    from rtfuse.checkpoint import save_checkpoint
    from rtfuse.model import create_model
    from rtfuse_train.stage2 import Stage2Options
    from rtfuse_train.stage2 import build_model as build_stage2_model

    torch.manual_seed(0)
    stage1 = create_model("rt-dense")  # a fusion network of another layout around the same DAGM
    path = save_checkpoint(tmp_path / "stage1.pt", stage1)
    model = build_stage2_model(Stage2Options(out=tmp_path / "rt.pt", dagm=path, model="rt"))
    assert model.cfg.name == "rt" and model.cfg.num_experts == 8
    for name, tensor in stage1.dagm.state_dict().items():
        assert torch.equal(model.dagm.state_dict()[name], tensor), name
    ablation = build_stage2_model(Stage2Options(out=tmp_path / "rt.pt", dagm=path, model="rt-nopkdm", base="max"))
    assert (ablation.cfg.pkdm, ablation.cfg.base, ablation.fused_head.conv.out_channels) == (False, "max", 16)


def test_base_target_asks_nothing_of_a_clean_input():
    """With --target base, a clean crop fused by the bare base (head zero, PKDM off) has zero pix and
    grad loss; the paper's max target still asks that clean fusion to change."""
    from rtfuse.model import create_model
    from rtfuse_train.stage2 import Stage2Options, loss_terms

    torch.manual_seed(0)
    model = create_model("rt").eval()
    torch.nn.init.zeros_(model.fused_head.conv.weight)
    torch.nn.init.zeros_(model.fused_head.conv.bias)
    with torch.no_grad():
        model.pkdm.ir_sharpen.strength.zero_()
    vis, ir = torch.rand(2, 3, 64, 64), torch.rand(2, 1, 64, 64)
    batch = {"vis": vis, "ir": ir, "clean_vis": vis, "clean_ir": ir, "stage_gates": torch.zeros(2, 3)}
    out = model(vis, ir, reconstruct=True, noisy=False, stage_gates=batch["stage_gates"])
    base = loss_terms(model, out, batch, "base")
    paper = loss_terms(model, out, batch, "max")
    assert float(base["pix"]) < 1e-6 and float(base["grad"]) < 1e-5
    assert float(paper["pix"]) > 0.01 and float(paper["grad"]) > 0.01
    with pytest.raises(RtfuseError, match="target"):
        Stage2Options(out=Path("x.pt"), dagm=Path("d.pt"), target="mean")
