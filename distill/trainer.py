"""One training loop for every stage (teacher fine-tuning, general, intermediate and prediction distillation).

Built on Hugging Face Accelerate, so `accelerate launch --num_processes 2 -m distill ...` runs it unchanged.
Resumes exactly: each epoch's shuffle and dropout RNG are seeded from (seed, epoch) alone, and every epoch
ends with `accelerator.save_state` (weights as safetensors, optimizer, scheduler, RNG), so epoch k+1 after a
resume sees the same order, the same dropout masks and the same optimizer state as an uninterrupted run.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import set_seed
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from mobile_app.runtime.errors import UserError
from distill.features import collate

DONE_FILE = "epoch.json"


def make_accelerator(cpu: bool = False) -> Accelerator:
    """Accelerate's Accelerator on the device `training_device` picks, with no flag: CUDA, then Apple's MPS, else the
    CPU (run as `cpu=True`, so that a multi-process launch uses gloo).

    Unused parameters (e.g. the pooler during intermediate distillation) are allowed under DDP.
    """
    kind = training_device(torch.cuda.is_available(), _mps_available(), force_cpu=cpu)
    return Accelerator(cpu=kind == "cpu", kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])


def training_device(cuda: bool, mps: bool, force_cpu: bool = False) -> str:
    """Where distillation runs: "cuda", "mps" or "cpu" (a pure function, so the choice is testable on a CPU box)."""
    if force_cpu:
        return "cpu"
    return "cuda" if cuda else "mps" if mps else "cpu"


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bfloat16 matmuls in hardware (CPU: AMX or AVX512-BF16; CUDA: Ampere on). Elsewhere bf16
    is emulated and slower than float32, so `train_precision=auto` stays float32 there."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_kernels_use_bf16(torch.backends.cpu.get_cpu_capability(),
                                    any(getattr(torch.cpu, probe, lambda: False)() for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")))
    return False


def cpu_kernels_use_bf16(capability: str, hardware_bf16: bool) -> bool:
    """bf16 is fast only when the CPU has AMX or AVX512-BF16 *and* torch's kernels may use them: under
    `ATEN_CPU_CAPABILITY=avx2` (how an AVX2-only CPU is emulated) the same chip runs bf16 ~10x slower than float32."""
    return hardware_bf16 and capability.upper().startswith(("AVX512", "AMX"))


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The dtype training forward passes autocast to under setting `train_precision` (None: float32 throughout)."""
    if precision == "bf16" or (precision == "auto" and native_bf16(device)):
        return torch.bfloat16
    return None


class EpochSampler(Sampler):
    """Batches of similar length in a random order drawn from seed + epoch only (identical on every process).

    The epoch's permutation is cut into chunks of 50 batches, each chunk is sorted by length and cut into
    batches, and the full batches are shuffled (a short remainder batch goes last). Short texts then pad to
    their neighbours' length instead of the longest in a random batch: several times less padding on SST-2.
    The DataLoader's batch sampler cuts this order back into the same batches; Accelerate shards them.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, chunk_batches: int = 50):
        self.lengths, self.batch_size, self.seed, self.chunk = list(lengths), batch_size, seed, batch_size * chunk_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        batches = []
        for start in range(0, len(order), self.chunk):
            chunk = sorted(order[start:start + self.chunk], key=lambda i: -self.lengths[i])
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        full = [b for b in batches if len(b) == self.batch_size]
        short = [b for b in batches if len(b) < self.batch_size]
        shuffled = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
        if short:  # at most one per chunk; merge them so only the last batch may be short
            rest = [i for b in short for i in b]
            shuffled += [rest[i:i + self.batch_size] for i in range(0, len(rest), self.batch_size)]
        return iter([i for batch in shuffled for i in batch])

    def __len__(self) -> int:
        return len(self.lengths)


@dataclass
class Phase:
    name: str            # also the checkpoint folder name
    objective: nn.Module  # forward(**batch) -> scalar loss
    features: list[dict]
    epochs: int
    lr: float


class EpochBudget:
    """Stop after this many epochs in this invocation (then `--resume` continues); None means no limit."""

    def __init__(self, epochs: int | None):
        self.left = epochs

    def take(self) -> bool:
        if self.left is None:
            return True
        if self.left <= 0:
            return False
        self.left -= 1
        return True


class Interrupted(Exception):
    """Raised when the epoch budget ran out; checkpoints are on disk for --resume."""


def _latest_epoch(phase_dir: Path) -> int:
    done = [int(p.parent.name.split("-")[1]) for p in phase_dir.glob(f"epoch-*/{DONE_FILE}")]
    return max(done, default=0)


def phase_finished(checkpoints: Path, name: str, epochs: int, resume: bool) -> bool:
    """Whether a resumed run will load phase `name` from its last checkpoint instead of training it."""
    return resume and epochs > 0 and _latest_epoch(Path(checkpoints) / name) >= epochs


def _optimizer(module: nn.Module, lr: float, weight_decay: float, fused: bool = True) -> torch.optim.Optimizer:
    """AdamW; `fused`: one kernel over all tensors where torch has it (CPU, CUDA, MPS), instead of torch's per-tensor
    loop, which is its default on CPU."""
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if param.requires_grad:
            (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(param)
    fused = fused and all(p.device.type in ("cpu", "cuda", "mps") for p in decay + no_decay)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr,
                             fused=fused or None)


def run_phase(accelerator: Accelerator, phase: Phase, *, batch_size: int, seed: int, checkpoints: Path, resume: bool,
              budget: EpochBudget, warmup_ratio: float = 0.1, weight_decay: float = 0.01, pad_id: int = 0,
              precision: str = "fp32", fused_optimizer: bool = True) -> dict:
    """Train `phase.objective` for `phase.epochs` epochs, checkpointing each; returns a summary dict.

    `precision` (setting `train_precision`): where `autocast_dtype` gives bfloat16, forward passes and their backward
    run under autocast in it; weights, optimizer state and checkpoints stay float32."""
    phase_dir = Path(checkpoints) / phase.name
    start = _latest_epoch(phase_dir) if resume else 0
    if phase_finished(checkpoints, phase.name, phase.epochs, resume):
        final = phase_dir / f"epoch-{start}"
        phase.objective.load_state_dict(load_file(str(final / "model.safetensors")))
        summary = json.loads((final / DONE_FILE).read_text())
        accelerator.print(f"{phase.name}: already done ({phase.epochs} epochs), loaded from {final}")
        return summary
    if not resume and accelerator.is_main_process and phase_dir.exists():
        shutil.rmtree(phase_dir)
    accelerator.wait_for_everyone()
    if phase.epochs <= 0 or not phase.features:
        return {"phase": phase.name, "epochs": 0, "steps": 0, "first_loss": None, "last_loss": None, "seconds": 0.0}

    sampler = EpochSampler([len(f["input_ids"]) for f in phase.features], batch_size, seed)
    loader = DataLoader(phase.features, batch_size=batch_size, sampler=sampler, collate_fn=lambda f: collate(f, pad_id))
    total_steps = len(loader) * phase.epochs  # unsharded count: Accelerate steps the scheduler once per process
    optimizer = _optimizer(phase.objective, phase.lr, weight_decay, fused_optimizer)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(warmup_ratio * total_steps), total_steps)
    model, optimizer, loader, scheduler = accelerator.prepare(phase.objective, optimizer, loader, scheduler)
    if start:
        accelerator.load_state(str(phase_dir / f"epoch-{start}"))
        accelerator.print(f"{phase.name}: resuming after epoch {start}")

    trained = [(name, p) for name, p in phase.objective.named_parameters() if p.requires_grad]
    dtype = autocast_dtype(precision, accelerator.device)
    began, first_loss, last_loss, steps = time.time(), None, None, 0
    for epoch in range(start, phase.epochs):
        if not budget.take():
            accelerator.free_memory()
            raise Interrupted(f"stopped before {phase.name} epoch {epoch + 1}; rerun with --resume to continue")
        loader.set_epoch(epoch)  # Accelerate's loader re-seeds the sampler from its own epoch counter on each pass
        set_seed(seed * 1000 + epoch, device_specific=True)  # dropout masks depend on (seed, epoch, process) only
        model.train()
        losses = []
        bar = tqdm(loader, desc=f"{phase.name} epoch {epoch + 1}/{phase.epochs}", disable=not accelerator.is_local_main_process,
                   leave=False, dynamic_ncols=True)
        for step, batch in enumerate(bar, start=1):
            with torch.autocast(accelerator.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                loss = model(**batch).float()
            losses.append(loss.item())
            where = f"{phase.name} epoch {epoch + 1} step {step}"
            if not math.isfinite(losses[-1]):
                raise UserError(f"{where}: the loss is {losses[-1]}; training diverged (lower --set {phase.name}_lr, check the "
                                "--set values and the teacher); nothing was saved")
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            _check_finite(trained, where, phase.name)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        steps += len(losses)
        mean = accelerator.gather(torch.tensor([sum(losses) / max(1, len(losses))], device=accelerator.device)).mean().item()
        first_loss = mean if first_loss is None else first_loss
        last_loss = mean
        _save_epoch(accelerator, phase_dir, epoch + 1, {"phase": phase.name, "epochs": phase.epochs, "epoch": epoch + 1, "mean_loss": mean})
    seconds = time.time() - began
    summary = {"phase": phase.name, "epochs": phase.epochs, "steps": steps, "first_loss": first_loss, "last_loss": last_loss,
               "seconds": round(seconds, 1), "dtype": str(dtype or torch.float32).removeprefix("torch.")}
    accelerator.print(f"{phase.name}: {phase.epochs - start} epoch(s), {steps} steps, mean loss "
                      f"{first_loss:.4f} (first epoch) -> {last_loss:.4f} (last), {seconds:.0f}s"
                      + (" (bfloat16 autocast, float32 weights)" if dtype is not None else ""))
    accelerator.free_memory()
    return summary


def _check_finite(named_parameters: list, where: str, phase: str) -> None:
    """Stop at the first step that leaves a NaN or infinity in a trained tensor, naming it (one fused norm per tensor)."""
    if not named_parameters:
        return
    norms = torch._foreach_norm([p.detach() for _, p in named_parameters])
    finite = torch.isfinite(torch.stack(norms))
    if not bool(finite.all()):
        name = named_parameters[int((~finite).nonzero()[0])][0]
        raise UserError(f"{where}: tensor {name} holds NaN or infinite values after the update; training diverged "
                        f"(lower --set {phase}_lr, check the --set values); nothing was saved")


def _save_epoch(accelerator: Accelerator, phase_dir: Path, epoch: int, info: dict) -> None:
    """Save the full training state for `epoch`, mark it complete, then drop the previous epoch's checkpoint."""
    target = phase_dir / f"epoch-{epoch}"
    accelerator.save_state(str(target), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (target / DONE_FILE).write_text(json.dumps(info))
        previous = phase_dir / f"epoch-{epoch - 1}"
        if previous.exists():
            shutil.rmtree(previous)
    accelerator.wait_for_everyone()
