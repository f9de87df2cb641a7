"""One DDP step on 2 gloo processes equals one process on the concatenated batch."""

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from moclip.data.dataset import load_dataset
from moclip.model import build_moclip
from moclip.motion_encoder import MotionEncoderConfig
from moclip.pairs import PairSet, collate_pairs
from moclip.text_encoders import TeacherCache, TextEncoderSpec, frozen_copy
from moclip.training import FinetuneConfig, make_optimizer, train_step

# real Ray, MLflow or several processes: left out of the fast lane (dev.py test --fast)
pytestmark = pytest.mark.heavy

SPEC = TextEncoderSpec(kind="tiny", width=32, layers=1, heads=2)
MOTION = MotionEncoderConfig(
    joint_width=16, temporal_width=32, temporal_layers=1, heads=2, dropout=0.0, frame_stride=4
)
# Adam's first step is lr * g / (|g| + eps): with the default eps a gradient that is float noise
# (say 1e-12 on both sides) still moves its parameter by up to lr, in a direction set by the
# noise; a larger eps keeps such parameters still, so the comparison is of real updates.
CONFIG = FinetuneConfig(  # one joint step: every part trains, the tether on
    steps=10,
    epochs=0,
    motion_only_share=0.0,
    batch_size=4,
    lr_text=1e-3,
    lr_motion=1e-3,
    lr_motion_joint=1e-3,
    warmup_steps=0,
    grad_clip=1.0,
    adam_eps=1e-6,
)


def _step(root: str, rows: list[int]) -> dict[str, torch.Tensor]:
    train = load_dataset(root, "train")
    pairs = PairSet(train)
    model, tokenizer = build_moclip(SPEC, train.skeleton, MOTION, seed=0)
    teacher = TeacherCache(frozen_copy(model.text), tokenizer)
    if dist.is_initialized():
        model = DistributedDataParallel(model)
    optimizer, scheduler = make_optimizer(model, CONFIG)
    batch = collate_pairs([pairs[i] for i in rows])
    metrics = train_step(
        model, batch, tokenizer, teacher, optimizer, scheduler, CONFIG, torch.device("cpu")
    )
    module = getattr(model, "module", model)
    out = {f"param:{n}": p.detach().clone() for n, p in module.named_parameters()}
    out.update(
        {f"grad:{n}": p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
    )
    out["loss"] = torch.tensor(metrics["contrastive"])
    return out


def _worker(rank: int, world: int, port: int, root: str, rows: list[int], out: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    torch.set_num_threads(1)
    share = len(rows) // world
    result = _step(root, rows[rank * share : (rank + 1) * share])
    if rank == 0:
        torch.save(result, out)
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_step_matches_one_process_on_the_whole_batch(tiny_corpus, tmp_path):
    rows = [0, 5, 9, 14, 20, 26, 31, 40]  # 8 pairs: 4 per process
    out = str(tmp_path / "ddp.pt")
    mp.spawn(_worker, args=(2, _free_port(), str(tiny_corpus), rows, out), nprocs=2, join=True)
    ddp = torch.load(out)
    single = _step(str(tiny_corpus), rows)
    assert ddp["loss"].item() == pytest.approx(single["loss"].item(), rel=1e-5)
    grads = [k for k in single if k.startswith("grad:")]
    assert len(grads) > 10 and set(grads) == {k for k in ddp if k.startswith("grad:")}
    for key in grads:
        torch.testing.assert_close(ddp[key], single[key], rtol=1e-4, atol=1e-6, msg=key)
    for key in (k for k in single if k.startswith("param:")):
        torch.testing.assert_close(ddp[key], single[key], rtol=1e-4, atol=1e-5, msg=key)
