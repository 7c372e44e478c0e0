"""The keypoint network (VL-MP Fig. 4), sized for a robot PC's CPU.

VL-MP's design: an HRNet backbone gives four parallel feature maps f1..f4 at H, H/2, H/4, H/8
(C, 2C, 4C, 8C channels); they are upsampled, fused by Conv2D, enhanced by self-attention, and
three heads predict object centres, 2D keypoints (u, v) and per-keypoint depth z. Here:

* **Input**: the whole 640 × 480 RGB-D frame (``rgb`` uint8 (B, H, W, 3), ``depth`` float32
  (B, H, W) metres along the optical axis, 0 = no depth). RGB is normalised inside the graph;
  depth enters as a normalised channel plus a validity mask.
* **Stem**: two stride-2 convolutions, so f1 is at 1/4 of the image (the paper's H is the
  network's highest resolution, as in HRNet, whose stem also goes to 1/4).
* **Backbone**: HRNet's parallel branches at 1/4, 1/8, 1/16, 1/32 (C, 2C, 4C, 8C channels),
  added one per stage (stages 2, 3, 4) with HRNet's exchange units (every branch gets every other
  one: upsampled 1×1 convolutions from coarser branches, strided convolutions from finer ones).
  Blocks are depthwise-separable residual blocks (Lite-HRNet / MobileNet style) at 1/4 and 1/8,
  where a full 3×3 convolution would dominate the CPU cost.
* **Fusion**: every branch upsampled to 1/4, concatenated, one 1×1 convolution → F.
* **Self-attention** on the fused map F, pooled to ``attn_stride`` (default 1/16 of the image:
  40 × 30 = 1200 tokens on a full frame; 1/8 costs 5× as much, see the stack notes), two heads,
  a learned 2-D positional term from a depthwise convolution (so any image size works), its
  output upsampled and added back to F.
* **Heads** at 1/4 (160 × 120 cells on a full frame), CenterNet-style:
  ``centre`` (B, C, h, w) sigmoid heatmap per class; ``kp_heat`` (B, K, h, w) sigmoid heatmaps
  (amodal: occluded keypoints are trained too); ``kp_offset`` (B, 2K, h, w) sub-cell offsets in
  cells; ``kp_disp`` (B, 2K, h, w) centre → keypoint displacement in cells (groups keypoints
  into objects); ``box`` (B, 4, h, w) distances from the cell to the object's amodal box edges
  (left, top, right, bottom) in cells; ``kp_depth`` (B, K, h, w) keypoint depth z
  in metres; ``kp_vis`` (B, K, h, w) visibility logits read at an object's centre;
  ``depth_valid`` (B, 1, h, w) fraction of valid depth pixels around each cell.

The depth head predicts z as a **residual** on a reference depth that the graph computes from the
depth image (valid-pixel average over a 5 × 5-cell window at 1/4): semantic keypoints need not lie
on a visible surface (the mouth centre is in the air, the base centre inside the material), so
reading the depth image at the keypoint pixel is wrong; the network learns the offset from
what it sees around it. Where the window has no valid depth the residual has nothing to stand on,
and ``depth_valid`` says so (the decoder reports "no depth" instead of a number).

Cell convention: cell (i, j) of a stride-s map covers pixels [s·j, s·j + s) horizontally, its
centre is at pixel u = s·(j + ½) − ½; a keypoint at u lies in cell j = floor((u + ½)/s) with
offset (u + ½)/s − ½ − j ∈ [−½, ½) — :func:`to_cell` / :func:`from_cell`.

Full frame or detector + crops? Measured on this 2-core box (ONNX Runtime, 2 threads; see
``kinebridge bench perception`` and docs/perception.md): this network runs one 640 × 480 frame in
the time the crop path needs for a detector pass plus ~2 crops, and its cost does not grow with
the number of mugs in view (ambiguous scenes have ≥ 3). The full frame was chosen; the same class
builds the crop-sized variant for the crop measurement (``KeypointNetConfig.crop()``).

Only ``torch.nn`` is used (no torchvision), so the graph exports with torch's default dynamo
exporter (:mod:`kinebridge.export.keypoints.export`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["KeypointNetConfig", "KeypointNet", "OUTPUTS", "to_cell", "from_cell", "STRIDE"]

STRIDE = 4
#: output names, in the order the network returns them (and the ONNX graph names them)
OUTPUTS = ("centre", "kp_heat", "kp_offset", "kp_disp", "box", "kp_depth", "kp_vis", "depth_valid")

RGB_MEAN = (0.45, 0.45, 0.45)
RGB_STD = (0.25, 0.25, 0.25)
DEPTH_MEAN, DEPTH_SCALE = 0.9, 0.3      # m: the depth channel is (z − 0.9)/0.3 where valid, 0 elsewhere


def to_cell(u, s: int = STRIDE):
    """Pixel coordinate → continuous cell coordinate (cell centres at integers)."""
    return (u + 0.5) / s - 0.5


def from_cell(c, s: int = STRIDE):
    """Continuous cell coordinate → pixel coordinate."""
    return (c + 0.5) * s - 0.5


@dataclass
class KeypointNetConfig:
    width: int = 16                       # C: branch widths C, 2C, 4C, 8C
    blocks: tuple[int, int, int] = (1, 1, 1)   # residual blocks per branch in stages 2, 3, 4
    fused: int = 48                       # channels of the fused map F
    head: int = 48                        # channels of each head's hidden layer
    attn_stride: int = 16                 # self-attention on F pooled to 1/attn_stride of the image (0: none)
    attn_heads: int = 2
    n_keypoints: int = 4
    n_classes: int = 1
    depth_window: int = 5                 # cells of the reference-depth window
    keypoints: tuple[str, ...] = ("K_i", "K_p1", "K_p2", "K_b")
    classes: tuple[str, ...] = ("mug",)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["blocks"] = list(self.blocks)
        d["keypoints"] = list(self.keypoints)
        d["classes"] = list(self.classes)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "KeypointNetConfig":
        d = dict(d)
        d["blocks"] = tuple(d.get("blocks", (1, 1, 1)))
        d["keypoints"] = tuple(d.get("keypoints", cls.keypoints))
        d["classes"] = tuple(d.get("classes", cls.classes))
        return cls(**d)

    @classmethod
    def tiny(cls) -> "KeypointNetConfig":
        """For tests: seconds to train a few steps."""
        return cls(width=8, blocks=(1, 1, 1), fused=16, head=16, attn_stride=16, attn_heads=1)


def _bn(c):
    return nn.BatchNorm2d(c, momentum=0.05)


class ConvBN(nn.Sequential):
    def __init__(self, cin, cout, k=3, s=1, groups=1, act=True):
        layers = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), _bn(cout)]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class SepConv(nn.Sequential):
    """Depthwise 3×3 (stride s) then pointwise 1×1, each with BN; ReLU at the end if ``act``."""

    def __init__(self, cin, cout, s=1, act=True):
        super().__init__(ConvBN(cin, cin, 3, s, groups=cin, act=False), ConvBN(cin, cout, 1, act=act))


class SepBlock(nn.Module):
    """Residual block of two depthwise-separable convolutions."""

    def __init__(self, c):
        super().__init__()
        self.a = SepConv(c, c)
        self.b = SepConv(c, c, act=False)

    def forward(self, x):
        return F.relu(x + self.b(self.a(x)))


class BasicBlock(nn.Module):
    """HRNet's basic block: two 3×3 convolutions with a residual."""

    def __init__(self, c):
        super().__init__()
        self.a = ConvBN(c, c)
        self.b = ConvBN(c, c, act=False)

    def forward(self, x):
        return F.relu(x + self.b(self.a(x)))


def _block(level: int, c: int) -> nn.Module:
    return SepBlock(c) if level < 2 else BasicBlock(c)


class Exchange(nn.Module):
    """HRNet's exchange unit: output branch i sums every input branch brought to its resolution."""

    def __init__(self, chans_in: list[int], chans_out: list[int]):
        super().__init__()
        self.paths = nn.ModuleList()
        for i, co in enumerate(chans_out):
            row = nn.ModuleList()
            for j, ci in enumerate(chans_in):
                if j == i:
                    row.append(nn.Identity() if ci == co else ConvBN(ci, co, 1, act=False))
                elif j > i:          # coarser → finer: 1×1 then upsample
                    row.append(ConvBN(ci, co, 1, act=False))
                else:                # finer → coarser: (i − j) strided separable convolutions
                    steps = []
                    c = ci
                    for k in range(i - j):
                        last = k == i - j - 1
                        steps.append(SepConv(c, co if last else c, s=2, act=not last))
                    row.append(nn.Sequential(*steps))
            self.paths.append(row)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for i, row in enumerate(self.paths):
            size = xs[i].shape[-2:]
            acc = None
            for j, (p, x) in enumerate(zip(row, xs)):
                y = p(x)
                if j > i:
                    y = F.interpolate(y, size=size, mode="nearest")
                acc = y if acc is None else acc + y
            out.append(F.relu(acc))
        return out


class NewBranch(nn.Module):
    """A coarser branch from the current coarsest one (strided separable convolution)."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = SepConv(cin, cout, s=2)

    def forward(self, x):
        return self.conv(x)


class Attention(nn.Module):
    """Multi-head self-attention over the pooled fused map, pre-norm, with a feed-forward layer.

    The positional term is a depthwise 3×3 convolution of the tokens' map (a conditional
    positional encoding), so the layer works at any image size without an interpolated table.
    """

    def __init__(self, c: int, heads: int):
        super().__init__()
        self.pos = nn.Conv2d(c, c, 3, 1, 1, groups=c)
        self.norm1 = nn.LayerNorm(c)
        self.attn = nn.MultiheadAttention(c, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(c)
        self.ff = nn.Sequential(nn.Linear(c, 2 * c), nn.GELU(), nn.Linear(2 * c, c))

    def forward(self, x):                       # x (B, C, h, w)
        B, C, h, w = x.shape
        x = x + self.pos(x)
        t = x.flatten(2).transpose(1, 2)        # (B, h·w, C)
        q = self.norm1(t)
        t = t + self.attn(q, q, q, need_weights=False)[0]
        t = t + self.ff(self.norm2(t))
        return t.transpose(1, 2).reshape(B, C, h, w)


def _out(hidden, cout, bias_init=0.0):
    conv = nn.Conv2d(hidden, cout, 1)
    nn.init.constant_(conv.bias, bias_init)
    return conv


class KeypointNet(nn.Module):
    """See the module docstring. ``forward(rgb, depth)`` returns the :data:`OUTPUTS` tuple."""

    def __init__(self, cfg: KeypointNetConfig | None = None):
        super().__init__()
        cfg = cfg or KeypointNetConfig()
        self.cfg = cfg
        C = cfg.width
        ch = [C, 2 * C, 4 * C, 8 * C]
        self.register_buffer("rgb_mean", torch.tensor(RGB_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("rgb_std", torch.tensor(RGB_STD).view(1, 3, 1, 1), persistent=False)
        self.stem = nn.Sequential(ConvBN(5, 16, 3, 2), SepConv(16, C, s=2), SepBlock(C))
        self.new2 = NewBranch(ch[0], ch[1])
        self.stage2 = nn.ModuleList(nn.Sequential(*[_block(i, ch[i]) for _ in range(cfg.blocks[0])]) for i in range(2))
        self.ex2 = Exchange(ch[:2], ch[:2])
        self.new3 = NewBranch(ch[1], ch[2])
        self.stage3 = nn.ModuleList(nn.Sequential(*[_block(i, ch[i]) for _ in range(cfg.blocks[1])]) for i in range(3))
        self.ex3 = Exchange(ch[:3], ch[:3])
        self.new4 = NewBranch(ch[2], ch[3])
        self.stage4 = nn.ModuleList(nn.Sequential(*[_block(i, ch[i]) for _ in range(cfg.blocks[2])]) for i in range(4))
        self.ex4 = Exchange(ch[:4], ch[:4])
        # fusion: "upsample every branch, Conv2D" — a 1×1 convolution commutes with upsampling, so each
        # branch is projected at its own resolution and the projections are upsampled and summed
        self.fuse = nn.ModuleList(nn.Conv2d(c, cfg.fused, 1, bias=False) for c in ch)
        self.fuse_bn = _bn(cfg.fused)
        self.attn = Attention(cfg.fused, cfg.attn_heads) if cfg.attn_stride else None
        K, Cc = cfg.n_keypoints, cfg.n_classes
        prior = -math.log((1 - 0.01) / 0.01)        # focal-loss prior: heatmaps start near 0.01
        self.trunk = nn.Sequential(SepConv(cfg.fused, cfg.head), ConvBN(cfg.head, cfg.head, 1))
        self.h_heat = _out(cfg.head, Cc + K, bias_init=prior)
        self.h_reg = _out(cfg.head, 4 * K + 4)
        self.h_depth = _out(cfg.head, 2 * K)
        self.register_buffer("pool_k", torch.ones(1, 1, cfg.depth_window, cfg.depth_window), persistent=False)

    # ------------------------------------------------------------------------------ pieces
    def _inputs(self, rgb, depth):
        x = rgb.permute(0, 3, 1, 2).float() * (1.0 / 255.0)
        x = (x - self.rgb_mean) / self.rgb_std
        d = depth.unsqueeze(1)
        valid = (d > 0).float()
        dn = (d - DEPTH_MEAN) * (1.0 / DEPTH_SCALE) * valid
        return torch.cat([x, dn, valid], 1), d, valid

    def reference_depth(self, d, valid):
        """(ref, frac) at 1/4: valid-depth average over a ``depth_window``² window of cells, and
        the fraction of valid pixels in it."""
        s = STRIDE
        num = F.avg_pool2d(d * valid, s, s)
        den = F.avg_pool2d(valid, s, s)
        p = self.cfg.depth_window // 2
        num = F.conv2d(num, self.pool_k, padding=p)
        den = F.conv2d(den, self.pool_k, padding=p)
        frac = den * (1.0 / (self.cfg.depth_window ** 2))
        ref = num / den.clamp_min(1e-3)
        return ref, frac

    def forward(self, rgb, depth):
        x, d, valid = self._inputs(rgb, depth)
        x1 = self.stem(x)
        xs = [x1, self.new2(x1)]
        xs = self.ex2([blk(t) for blk, t in zip(self.stage2, xs)])
        xs = xs + [self.new3(xs[-1])]
        xs = self.ex3([blk(t) for blk, t in zip(self.stage3, xs)])
        xs = xs + [self.new4(xs[-1])]
        xs = self.ex4([blk(t) for blk, t in zip(self.stage4, xs)])
        size = xs[0].shape[-2:]
        f = self.fuse[0](xs[0])
        for proj, t in zip(self.fuse[1:], xs[1:]):
            f = f + F.interpolate(proj(t), size=size, mode="bilinear", align_corners=False)
        f = F.relu(self.fuse_bn(f))
        if self.attn is not None:
            k = max(1, self.cfg.attn_stride // STRIDE)
            a = self.attn(F.avg_pool2d(f, k, k)) if k > 1 else self.attn(f)
            f = f + F.interpolate(a, size=size, mode="bilinear", align_corners=False)
        K, Cc = self.cfg.n_keypoints, self.cfg.n_classes
        h = self.trunk(f)
        heat = torch.sigmoid(self.h_heat(h))
        reg = self.h_reg(h)
        dep = self.h_depth(h)
        ref, frac = self.reference_depth(d, valid)
        kp_depth = ref + 0.1 * dep[:, :K]              # residual head in decimetres
        return (heat[:, :Cc], heat[:, Cc:], reg[:, :2 * K], reg[:, 2 * K:4 * K], reg[:, 4 * K:],
                kp_depth, dep[:, K:], frac)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
