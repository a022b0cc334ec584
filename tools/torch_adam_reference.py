"""Trajectories of real `torch.optim.Adam(weight_decay=...)`, for the AdamL2 test.

Runs in the torch lane (`.venv-torch`, made by `bash tools/make_torch_venv.sh`);
`tests/optimizers/test_adam_l2.py` writes the cases, runs this script in a
subprocess and compares `keras_mdr.optimizers.AdamL2` with what it writes.

Usage:
    .venv-torch/bin/python tools/torch_adam_reference.py CASES.npz OUT.npz

CASES.npz holds, per case i: case{i}_w0 (float32 (n,), the initial
parameter), case{i}_grads (float32 (T, n), the data gradient of every step),
case{i}_lrs (float64 (T,), the learning rate of every step, set on the param
group before the step as `MultiStepLR` does), case{i}_hyper (float64
[weight_decay, beta_1, beta_2, epsilon]); and num_cases. The data gradients
are given, not computed, so both sides see the same numbers; the coupled L2
term makes every step depend on the parameter all the same.

OUT.npz holds, per case, case{i}_trajectory (float32 (T, n): the parameter
after every step) and case{i}_exp_avg, case{i}_exp_avg_sq (float32 (n,), the
moments after the last step); and torch_version.
"""

import sys

import numpy as np
import torch


def run_case(w0, grads, lrs, hyper):
    weight_decay, beta_1, beta_2, epsilon = (float(h) for h in hyper)
    param = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    optimizer = torch.optim.Adam(
        [param], lr=float(lrs[0]), betas=(beta_1, beta_2), eps=epsilon,
        weight_decay=weight_decay,
    )
    trajectory = np.empty(grads.shape, np.float32)
    for step, (grad, lr) in enumerate(zip(grads, lrs)):
        optimizer.param_groups[0]["lr"] = float(lr)
        param.grad = torch.from_numpy(grad.copy())
        optimizer.step()
        trajectory[step] = param.detach().numpy()
    state = optimizer.state[param]
    return trajectory, state["exp_avg"].numpy(), state["exp_avg_sq"].numpy()


def main(argv):
    cases_path, out_path = argv
    torch.set_num_threads(1)
    out = {"torch_version": torch.__version__}
    with np.load(cases_path) as cases:
        for i in range(int(cases["num_cases"])):
            trajectory, exp_avg, exp_avg_sq = run_case(
                cases[f"case{i}_w0"], cases[f"case{i}_grads"],
                cases[f"case{i}_lrs"], cases[f"case{i}_hyper"],
            )
            out.update({
                f"case{i}_trajectory": trajectory,
                f"case{i}_exp_avg": exp_avg,
                f"case{i}_exp_avg_sq": exp_avg_sq,
            })
    np.savez(out_path, **out)


if __name__ == "__main__":
    main(sys.argv[1:])
