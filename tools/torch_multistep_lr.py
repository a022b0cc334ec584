"""The learning rate of every iteration under torch's MultiStepLR stepped once per epoch.

Usage: python tools/torch_multistep_lr.py LR GAMMA EPOCHS STEPS_PER_EPOCH M1,M2,...
Prints a JSON list: the lr each of the EPOCHS x STEPS_PER_EPOCH optimizer
steps used, read from the optimizer as the step runs (the release's loop:
`optimizer.step()` per iteration, `scheduler.step()` at each epoch's end).
"""

import json
import sys

import torch


def main(lr, gamma, epochs, steps, milestones):
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([weight], lr=lr, weight_decay=1e-5)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=gamma)
    used = []
    for _ in range(epochs):
        for _ in range(steps):
            used.append(optimizer.param_groups[0]["lr"])
            optimizer.zero_grad()
            weight.sum().backward()
            optimizer.step()
        scheduler.step()
    print(json.dumps(used))


if __name__ == "__main__":
    main(float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]),
         [int(m) for m in sys.argv[5].split(",")])
