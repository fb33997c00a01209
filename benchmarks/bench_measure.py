"""One benchmark setting measured in this process (``benchmarks/bench.py --child``): the DSR
training step split by component, then evaluation split by component.

``measure(args, setting)`` -> the result dict that ``bench_report`` renders (times in seconds per
call, memories in MB). Each component runs on detached inputs so that its forward + backward is
timed alone; see ``benchmarks/bench.py``'s docstring for the components.
"""
from __future__ import annotations

import contextlib
import statistics
import sys

from bench_timing import loader_rate, peak_memory_of, timed


def configure(args, setting: dict):
    """The frozen config of one setting: ``--cfg`` + ``--opts``, then the setting's backbone / crop
    (focal length scaled with it) / batch size and ``--precision``; no pretrained weights."""
    from dsr.config import load_config, merge_opts

    cfg = merge_opts(load_config(args.cfg), args.opts)
    cfg.defrost()
    if cfg.METHOD != "dsr":
        raise SystemExit(f"{args.cfg}: METHOD is {cfg.METHOD!r}; the benchmark needs 'dsr' (the DSR terms)")
    if setting.get("backbone"):
        cfg.DSR.BACKBONE = setting["backbone"]
    if setting.get("img_res"):
        cfg.DATASET.FOCAL_LENGTH = float(cfg.DATASET.FOCAL_LENGTH) * setting["img_res"] / cfg.DATASET.IMG_RES
        cfg.DATASET.IMG_RES = int(setting["img_res"])
    if setting.get("batch_size"):
        cfg.DATASET.BATCH_SIZE = int(setting["batch_size"])
    if args.precision:
        cfg.TRAINER.PRECISION = args.precision
    cfg.TRAINING.PRETRAINED = None
    cfg.freeze()
    return cfg


def amp_setup(precision: str, device, notes: list):
    """(amp, scaler) for TRAINER.PRECISION: ``amp()`` the autocast context (a null one in fp32),
    ``scaler`` a GradScaler for fp16 (else None); 16-mixed on the CPU runs as bf16 (a note)."""
    import torch

    amp_dtype = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}.get(str(precision))
    if amp_dtype is torch.float16 and device.type != "cuda":
        amp_dtype = torch.bfloat16
        notes.append("precision 16-mixed on CPU runs as bf16-mixed (as Lightning does)")

    def amp():
        return torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()

    return amp, (torch.amp.GradScaler(device.type) if amp_dtype is torch.float16 else None)


def measure(args, setting: dict) -> dict:
    """Training step, then evaluation, of one setting -> result dict (see the module docstring)."""
    import torch

    from dsr.lightning_module import DSRModule
    from dsr.rendering.semantic_renderer import resolve_backend
    from dsr.data.loader import resolve_num_workers

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    cfg = configure(args, setting)
    n = int(setting["steps"])
    B = int(cfg.DATASET.BATCH_SIZE)
    notes = []
    precision = str(cfg.TRAINER.PRECISION)
    amp, scaler = amp_setup(precision, device, notes)

    module = DSRModule(cfg).to(device)
    loss_fn = module.loss_fn
    if loss_fn.renderer is None:
        raise SystemExit(f"{args.cfg}: both DSR loss weights are 0: nothing to render")
    res = dict(backbone=cfg.DSR.BACKBONE, img_res=int(cfg.DATASET.IMG_RES), batch_size=B, steps=n,
               num_workers=resolve_num_workers(cfg), render_backend=resolve_backend(loss_fn.renderer.backend, device),
               precision=precision, train_times={}, train_mem={}, eval_times={}, eval_mem={}, notes=notes)
    measure_train(cfg, device, module, n, amp, scaler, res)
    measure_eval(cfg, device, module, n, amp, res)
    return res


def train_step(module, opt, batch: dict, amp, scaler) -> None:
    """One whole DSR training step on a batch already on the device: forward, the ground-truth
    mesh, every loss (DSR terms on), backward, optimizer step (``scaler``: fp16 loss scaling)."""
    import torch

    with amp():
        pred = module.model(batch["img"])
        with torch.no_grad():
            batch["gt_vertices"] = module._gt_mesh(batch["pose"], batch["betas"]).vertices
        loss, _ = module.loss_fn(pred, batch, start_dsr=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    else:
        loss.backward()
        opt.step()
    opt.zero_grad(set_to_none=True)


def _time_loader(loader, n: int, device, res: dict, split: str):
    """The data row of ``split`` ('train' / 'eval') into res[split + '_times' / '_mem'] (a note when
    the loader has too few batches) -> (start-up s, first batch on the device, workers' private MB)."""
    periods, startup, batch, res[f"{split}_mem"]["data"], wmem = loader_rate(loader, n, device)
    if periods:
        res[f"{split}_times"]["data"] = periods
    else:
        what = "training" if split == "train" else "evaluation"
        res["notes"].append(f"{what} data loading not timed: {len(loader)} batches are too few for "
                            f"{loader.num_workers} workers")
    return startup, batch, wmem


def measure_train(cfg, device, module, n: int, amp, scaler, res: dict) -> None:
    """The training-step components into res['train_times'] / res['train_mem'] (and notes)."""
    import torch

    from dsr.data.loader import build_train_dataset, train_dataloader

    model, loss_fn = module.model, module.loss_fn
    B, notes = res["batch_size"], res["notes"]
    tt, tm = res["train_times"], res["train_mem"]

    # data
    startup, batch, wmem = _time_loader(train_dataloader(cfg, build_train_dataset(cfg)), n, device, res, "train")
    notes.append(f"training DataLoader: start-up (workers + first batch) {startup:.2f} s"
                 + (f"; workers' private memory {', '.join(f'{m:.0f}' for m in wmem)} MB" if wmem else ""))
    img = batch["img"]
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.OPTIMIZER.LR, weight_decay=cfg.OPTIMIZER.WD)
    params = [p for p in model.parameters() if p.requires_grad]

    def clear_grads():
        model.zero_grad(set_to_none=True)

    # reference outputs (and gradient-shaped tensors) of one full forward
    with torch.no_grad():
        head_ref = model.head(model.backbone(img))
        pred_ref = model.decode(dict(head_ref))
        batch["gt_vertices"] = module._gt_mesh(batch["pose"], batch["betas"]).vertices
    if not bool((batch["valid_labels_dsr_mc"].sum(1) > 0).any()):
        raise SystemExit(f"no sample of the first training batch has a valid DSR-MC label (batch {B}, "
                         f"{cfg.DATASET.IMG_RES} px: the masks' minimum pixel counts are not met): nothing would be "
                         "rendered; use a larger batch or crop")
    head_keys = ("pred_pose", "pred_shape", "pred_cam")
    head_grads = [torch.randn_like(head_ref[k]) * 1e-3 for k in head_keys]
    out_keys = ("smpl_vertices", "smpl_joints3d", "smpl_joints2d", "pred_cam_t")
    out_grads = [torch.randn_like(pred_ref[k]) * 1e-3 for k in out_keys]

    def backbone_step():
        with amp():
            out = model.head(model.backbone(img))
        torch.autograd.backward([out[k] for k in head_keys], head_grads)

    def smpl_step():
        inp = {k: head_ref[k].detach().clone().requires_grad_(True) for k in head_keys}
        with amp():
            out = model.decode(inp)
            with torch.no_grad():
                module._gt_mesh(batch["pose"], batch["betas"])
        torch.autograd.backward([out[k] for k in out_keys], out_grads)

    def leaf_pred():
        return {k: v.detach().clone().requires_grad_(v.is_floating_point()) for k, v in pred_ref.items()}

    def render_step():
        pred = leaf_pred()
        with amp():
            l_mc, l_c, _ = loss_fn.dsr_losses(pred, batch)
        (loss_fn.dsr_mc_loss_weight * l_mc.mean() + loss_fn.dsr_c_loss_weight * l_c.mean()).backward()

    def losses_step():
        with amp():
            loss, _ = loss_fn(leaf_pred(), batch, start_dsr=False)
        loss.backward()

    def full_step():
        train_step(module, opt, batch, amp, scaler)

    fake = [torch.randn_like(p) * 1e-3 for p in params]

    def set_grads():
        for p, g in zip(params, fake):
            p.grad = g.clone()

    def opt_step():
        opt.step()
        opt.zero_grad(set_to_none=True)

    snapshot = [p.detach().clone() for p in params]

    def restore_and_clear():  # every full step starts from the same weights (untimed)
        with torch.no_grad():
            for p, q in zip(params, snapshot):
                p.copy_(q)
        clear_grads()

    comps = [("backbone", backbone_step, clear_grads), ("smpl", smpl_step, None), ("render", render_step, None),
             ("losses", losses_step, None), ("full", full_step, restore_and_clear), ("optimizer", opt_step, set_grads)]
    tt.update(timed(comps, n, device))
    for key, fn, reset in comps:
        tm[key] = peak_memory_of(fn, device, reset)
    print(f"[{cfg.DSR.BACKBONE} {cfg.DATASET.IMG_RES}px] training: " + ", ".join(
        f"{k} {1e3 * statistics.median(tt[k]):.0f} ms" for k, _, _ in comps), file=sys.stderr, flush=True)
    restore_and_clear()
    del batch, head_ref, pred_ref, fake, snapshot


def measure_eval(cfg, device, module, n: int, amp, res: dict) -> None:
    """The evaluation components into res['eval_times'] / res['eval_mem'] (and notes)."""
    import torch

    from dsr.data.loader import build_val_dataset, val_dataloader
    from dsr.evaluation import metrics
    from dsr.evaluation.protocols import MESH_GT_DATASETS, centre_and_select, gt_from_s

    model, notes = module.model, res["notes"]

    et, em = res["eval_times"], res["eval_mem"]
    ds = cfg.DATASET.VAL_DS
    _, vb, _ = _time_loader(val_dataloader(cfg, build_val_dataset(cfg)), n, device, res, "eval")
    model.eval()
    body = model.body
    vimg = vb["img"]
    with torch.no_grad():
        head_out = model.head(model.backbone(vimg))
        pv = model.decode(dict(head_out))["smpl_vertices"]
        pj = centre_and_select(body.regress_h36m_joints(pv), ds)
        if ds in MESH_GT_DATASETS:
            gv = module._gt_vertices_gendered(vb)
            gj = centre_and_select(body.regress_h36m_joints(gv), ds)
        else:
            gv, gj = None, gt_from_s(vb["pose_3d"].to(pj.dtype), ds)

    def eval_forward():
        with torch.no_grad(), amp():
            model.head(model.backbone(vimg))

    def eval_body():
        with torch.no_grad(), amp():
            v = model.decode(dict(head_out))["smpl_vertices"]
            centre_and_select(body.regress_h36m_joints(v), ds)
            if gv is not None:
                centre_and_select(body.regress_h36m_joints(module._gt_vertices_gendered(vb)), ds)

    def eval_metrics():
        with torch.no_grad():
            if gv is not None:
                metrics.pve(pv, gv)
            p64, g64 = pj.double(), gj.double()
            (p64 - g64).norm(dim=-1)
            (metrics.similarity_procrustes(p64, g64) - g64).norm(dim=-1)

    comps = [("forward", eval_forward, None), ("body", eval_body, None), ("metrics", eval_metrics, None)]
    et.update(timed(comps, n, device))
    for key, fn, _ in comps:
        em[key] = peak_memory_of(fn, device)
    print(f"[{cfg.DSR.BACKBONE} {cfg.DATASET.IMG_RES}px] evaluation: " + ", ".join(
        f"{k} {1e3 * statistics.median(et[k]):.0f} ms" for k, _, _ in comps), file=sys.stderr, flush=True)
    notes.append(f"evaluation on `{ds}`; memory: " + (
        "torch.cuda.max_memory_allocated growth per component" if device.type == "cuda" else
        "peak RSS growth of the main process per component (after malloc_trim, VmHWM reset)"))
