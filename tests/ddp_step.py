"""One process of tests/test_distributed.py's gradient check: two ALAE steps, the state saved by rank 0.

    python tests/ddp_step.py OUT.pt          # one process, whole batch
    (RANK=r WORLD_SIZE=2 ... ) same command  # each rank its half, gradients averaged

Plain SGD, so a parameter update is the learning rate times the averaged
gradient and the two runs must agree to float rounding (Adam's first steps
divide by the gradient's own size and magnify rounding in near-zero entries).
"""

from __future__ import annotations

import os
import sys

import torch

from galaug import distributed
from galaug_alae.generator import AlaeConfig, Nets, _train_step


def main(out: str) -> None:
    torch.set_num_threads(1)
    distributed.init()
    cfg = AlaeConfig(image_size=16, latent_dim=16, mapping_layers=2, fmap_base=64, fmap_max=16, batch_size=8,
                     style_mixing=0.5, r1_every=1)
    torch.manual_seed(0)
    nets = Nets(cfg.net(2))
    x = torch.randn(cfg.batch_size, 2, 16, 16, generator=torch.Generator().manual_seed(1))
    opt_ed = torch.optim.SGD([*nets.E.parameters(), *nets.D.parameters()], lr=0.1)
    opt_fg = torch.optim.SGD([*nets.F.parameters(), *nets.G.parameters()], lr=0.1)
    part = slice(*distributed.shard_range(cfg.batch_size))
    for _ in range(int(os.environ.get("DDP_STEPS", "2"))):
        logs = _train_step(nets, opt_ed, opt_fg, x[part], cfg, cfg.net(2).levels - 1, 1.0, cfg.batch_size,
                           part=part)
    if distributed.is_main():
        torch.save({"nets": nets.state_dict(), "loss_d": logs["loss_d"]}, out)


if __name__ == "__main__":
    main(sys.argv[1])
