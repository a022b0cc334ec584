"""The PyTorch side of the BN-Inception parity lane: checkpoints and reference outputs.

Runs only in the torch environment (`bash tools/make_torch_venv.sh`, torch
2.13.0 CPU); `tests/backbones/` runs it in a subprocess and checks
keras_mdr's PyTorch-free reader and Keras BN-Inception against what it writes.

Usage:
    .venv-torch/bin/python tools/torch_bn_inception.py OUT_DIR [--seed 0]
        [--image_size 224] [--num_images 2]

It writes into OUT_DIR:
- `imagenet_legacy.pth`, `imagenet_zip.pth`: a BN-Inception state_dict in the
  key layout of the ImageNet weights (`conv1_7x7_s2.weight`, BatchNorm
  tensors shaped (1, C), a 1000-class `last_linear`, no
  `num_batches_tracked`), saved in the legacy and in the zip layout;
- `release_legacy.pth`, `release_zip.pth`: the same network in the layout of
  the MDR authors' checkpoints (`base.model.<name>` including
  `num_batches_tracked` and `last_linear`, plus a 512-d head `linear.*`);
- `reader_legacy.pth`, `reader_zip.pth`: a state_dict of every storage type
  and of views (offsets, transposed strides, shared storages, 0-d, empty);
- `reference.npz`: the images, the network's 1024-d features and the head's
  512-d embeddings (eval mode), the reader cases' values, and max / average
  pooling cases with `ceil_mode=True` (inputs and PyTorch's outputs,
  channels last).

The network is written here from the published architecture (Ioffe &
Szegedy 2015, as laid out by Cadene's pretrained-models port that the MDR
release uses), independently of keras_mdr's Keras model. Its weights are
seeded and random, and so are its BatchNorm statistics: measured on a random
batch (so that activations keep a sensible scale through 70 layers), then
perturbed per channel.
"""

import argparse
import collections
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MEAN_BGR = (104.0, 117.0, 128.0)

# Inception blocks as branch widths; "s2" blocks halve the resolution.
INCEPTION = collections.OrderedDict(
    [
        ("3a", dict(b1=64, r3=64, b3=64, rd=64, bd=96, pool="avg", proj=32)),
        ("3b", dict(b1=64, r3=64, b3=96, rd=64, bd=96, pool="avg", proj=64)),
        ("3c", dict(r3=128, b3=160, rd=64, bd=96, pool="s2")),
        ("4a", dict(b1=224, r3=64, b3=96, rd=96, bd=128, pool="avg", proj=128)),
        ("4b", dict(b1=192, r3=96, b3=128, rd=96, bd=128, pool="avg", proj=128)),
        ("4c", dict(b1=160, r3=128, b3=160, rd=128, bd=160, pool="avg", proj=128)),
        ("4d", dict(b1=96, r3=128, b3=192, rd=160, bd=192, pool="avg", proj=128)),
        ("4e", dict(r3=128, b3=192, rd=192, bd=256, pool="s2")),
        ("5a", dict(b1=352, r3=192, b3=320, rd=160, bd=224, pool="avg", proj=128)),
        ("5b", dict(b1=352, r3=192, b3=320, rd=192, bd=224, pool="max", proj=128)),
    ]
)


class BNInception(nn.Module):
    """BN-Inception with flat module names (the state_dict keys of the port)."""

    def __init__(self):
        super().__init__()
        self._unit("conv1_7x7_s2", 3, 64, 7, 2, 3)
        self._unit("conv2_3x3_reduce", 64, 64, 1)
        self._unit("conv2_3x3", 64, 192, 3, 1, 1)
        channels = 192
        for name, b in INCEPTION.items():
            p, s2 = f"inception_{name}", b["pool"] == "s2"
            if not s2:
                self._unit(f"{p}_1x1", channels, b["b1"], 1)
            self._unit(f"{p}_3x3_reduce", channels, b["r3"], 1)
            self._unit(f"{p}_3x3", b["r3"], b["b3"], 3, 2 if s2 else 1, 1)
            self._unit(f"{p}_double_3x3_reduce", channels, b["rd"], 1)
            self._unit(f"{p}_double_3x3_1", b["rd"], b["bd"], 3, 1, 1)
            self._unit(f"{p}_double_3x3_2", b["bd"], b["bd"], 3, 2 if s2 else 1, 1)
            if not s2:
                self._unit(f"{p}_pool_proj", channels, b["proj"], 1)
            channels = (0 if s2 else b["b1"] + b["proj"]) + b["b3"] + b["bd"] + (channels if s2 else 0)
        assert channels == 1024, channels

    def _unit(self, name, c_in, c_out, kernel, stride=1, padding=0):
        setattr(self, name, nn.Conv2d(c_in, c_out, kernel, stride, padding))
        setattr(self, f"{name}_bn", nn.BatchNorm2d(c_out, eps=1e-5))

    def _run(self, name, x):
        conv = getattr(self, name)
        return F.relu(getattr(self, f"{name}_bn")(conv(x)))

    def _block(self, name, b, x):
        p = f"inception_{name}"
        outs = [] if b["pool"] == "s2" else [self._run(f"{p}_1x1", x)]
        outs.append(self._run(f"{p}_3x3", self._run(f"{p}_3x3_reduce", x)))
        y = self._run(f"{p}_double_3x3_1", self._run(f"{p}_double_3x3_reduce", x))
        outs.append(self._run(f"{p}_double_3x3_2", y))
        if b["pool"] == "s2":
            outs.append(F.max_pool2d(x, 3, 2, ceil_mode=True))
        else:
            if b["pool"] == "avg":
                y = F.avg_pool2d(x, 3, 1, 1, ceil_mode=True, count_include_pad=True)
            else:
                y = F.max_pool2d(x, 3, 1, 1, ceil_mode=True)
            outs.append(self._run(f"{p}_pool_proj", y))
        return torch.cat(outs, 1)

    def features(self, rgb):
        """RGB NCHW in [0, 255] -> the last 1024-channel map."""
        x = rgb.flip(1) - torch.tensor(MEAN_BGR).view(1, 3, 1, 1)
        x = F.max_pool2d(self._run("conv1_7x7_s2", x), 3, 2, ceil_mode=True)
        x = self._run("conv2_3x3", self._run("conv2_3x3_reduce", x))
        x = F.max_pool2d(x, 3, 2, ceil_mode=True)
        for name, b in INCEPTION.items():
            x = self._block(name, b, x)
        return x

    def forward(self, rgb):
        x = self.features(rgb)
        return F.avg_pool2d(x, x.shape[2]).flatten(1)


def randomise_batchnorm(model, generator, calibration):
    """Random gamma / beta; running statistics of a random batch, perturbed."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for m in norms:
            m.weight.uniform_(0.5, 1.5, generator=generator)
            m.bias.uniform_(-0.5, 0.5, generator=generator)
            m.momentum = 1.0  # running statistics := this batch's
        model.train()
        model(calibration)
        model.eval()
        for m in norms:
            c = m.num_features
            std = m.running_var.sqrt()
            m.running_mean += 0.2 * std * torch.randn(c, generator=generator)
            m.running_var *= torch.empty(c).uniform_(0.5, 2.0, generator=generator)
            m.momentum = 0.1


def imagenet_layout(state, generator):
    out = collections.OrderedDict()
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        module = key.rsplit(".", 1)[0]
        out[key] = value.clone().unsqueeze(0) if module.endswith("_bn") else value.clone()
    out["last_linear.weight"] = torch.randn(1000, 1024, generator=generator) * 0.01
    out["last_linear.bias"] = torch.zeros(1000)
    return out


def release_layout(state, head, generator):
    out = collections.OrderedDict((f"base.model.{k}", v.clone()) for k, v in state.items())
    out["base.model.last_linear.weight"] = torch.randn(1000, 1024, generator=generator) * 0.01
    out["base.model.last_linear.bias"] = torch.zeros(1000)
    out["linear.weight"] = head.weight.detach().clone()
    out["linear.bias"] = head.bias.detach().clone()
    return out


def reader_cases(generator):
    """Tensors of every storage type and geometry the reader must handle."""
    base = torch.randn(6, 5, generator=generator)
    cases = collections.OrderedDict()
    cases["float32"] = base
    cases["transposed"] = base.t()  # strides (1, 5), shares base's storage
    cases["offset_slice"] = base[2:, 1:4]  # offset 11, strides (5, 1)
    cases["scalar"] = torch.tensor(3.5)
    cases["empty"] = torch.zeros(0, 3)
    cases["float64"] = torch.randn(3, 2, dtype=torch.float64, generator=generator)
    cases["float16"] = torch.randn(7, generator=generator).half()
    cases["bfloat16"] = torch.randn(2, 3, generator=generator).bfloat16()
    cases["int64"] = torch.arange(-4, 8, dtype=torch.int64).reshape(3, 4)
    cases["int32"] = torch.tensor([-(2**31), 2**31 - 1], dtype=torch.int32)
    cases["int16"] = torch.tensor([-7, 300], dtype=torch.int16)
    cases["int8"] = torch.tensor([-128, 127], dtype=torch.int8)
    cases["uint8"] = torch.tensor([0, 255, 17], dtype=torch.uint8)
    cases["bool"] = torch.tensor([True, False, True])
    return cases


# (mode, height, width, kernel, stride, padding): the network's pools, and
# sizes where ceil mode adds a window, where the last window would start in
# the padding (and is dropped), where it sticks out past the padding (average
# divisor below k * k), and kernel < stride.
POOL_CASES = (
    ("max", 112, 112, 3, 2, 0), ("max", 56, 56, 3, 2, 0), ("max", 28, 28, 3, 2, 0),
    ("max", 14, 14, 3, 2, 0), ("max", 7, 7, 3, 1, 1), ("avg", 28, 28, 3, 1, 1),
    ("max", 113, 111, 3, 2, 0), ("max", 5, 6, 2, 2, 1), ("avg", 5, 6, 2, 2, 1),
    ("max", 8, 9, 3, 2, 1), ("avg", 8, 9, 3, 2, 1), ("avg", 10, 7, 3, 3, 1),
    ("max", 10, 7, 1, 2, 0), ("avg", 11, 11, 4, 3, 2), ("max", 11, 11, 4, 3, 2),
)


def pooling_reference(generator):
    arrays = {"pool_cases": np.array([c[1:] for c in POOL_CASES], np.int64),
              "pool_modes": np.array([c[0] for c in POOL_CASES])}
    for i, (mode, h, w, k, s, p) in enumerate(POOL_CASES):
        x = torch.randn(2, 3, h, w, generator=generator)
        if mode == "max":
            y = F.max_pool2d(x, k, s, p, ceil_mode=True)
        else:
            y = F.avg_pool2d(x, k, s, p, ceil_mode=True, count_include_pad=True)
        arrays[f"pool_{i}_input"] = x.permute(0, 2, 3, 1).numpy()
        arrays[f"pool_{i}_output"] = y.permute(0, 2, 3, 1).numpy()
    return arrays


def save_both(state, out_dir, stem):
    torch.save(state, os.path.join(out_dir, f"{stem}_legacy.pth"), _use_new_zipfile_serialization=False)
    torch.save(state, os.path.join(out_dir, f"{stem}_zip.pth"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--num_images", type=int, default=2)
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    torch.set_num_threads(2)

    model, head = BNInception(), nn.Linear(1024, 512)
    size = args.image_size
    calibration = torch.randint(0, 256, (4, 3, size, size), generator=generator).float()
    randomise_batchnorm(model, generator, calibration)
    images = torch.randint(0, 256, (args.num_images, 3, size, size), generator=generator).float()
    with torch.no_grad():
        features = model(images)
        embeddings = head(features)

    state = model.state_dict()
    save_both(imagenet_layout(state, generator), args.out_dir, "imagenet")
    save_both(release_layout(state, head, generator), args.out_dir, "release")
    cases = reader_cases(generator)
    save_both(cases, args.out_dir, "reader")
    arrays = dict(
        images=images.permute(0, 2, 3, 1).numpy(),
        features=features.numpy(),
        embeddings=embeddings.numpy(),
        torch_version=np.array(torch.__version__),
        seed=np.array(args.seed),
        **{f"reader_{k}": (v.float() if v.dtype == torch.bfloat16 else v).numpy() for k, v in cases.items()},
        **pooling_reference(generator),
    )
    np.savez(os.path.join(args.out_dir, "reference.npz"), **arrays)
    print(f"torch {torch.__version__}: features |f| mean {features.abs().mean():.4g}, "
          f"nonzero {(features > 0).float().mean():.3f}; embeddings |e| mean {embeddings.abs().mean():.4g}")


if __name__ == "__main__":
    main()
