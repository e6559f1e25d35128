"""The official FCMAE in plain PyTorch with its sparse (MinkowskiEngine) layers replaced by their dense-masked
equivalent: the baseline ``keras-convnext bench --mode pretraining`` measures this package against.

Structure and names follow facebookresearch/ConvNeXt-V2 (``models/fcmae.py``, ``models/convnextv2_sparse.py``), so
its ``state_dict`` has the official dense keys (``encoder.stages.0.0.dwconv.weight``, ``proj.weight``, ...), which
``kc.pretraining.load_fcmae_checkpoint`` reads. Masking: removed positions are zeroed before and after each conv,
and each encoder GRN takes its norm over the kept positions of the whole batch, as ``MinkowskiGRN`` does.
"""

import torch
from torch import nn
from torch.nn import functional


def _channels_last_norm(norm, x):
    return norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class MaskedGRN(nn.Module):
    """GRN on channels-last ``x``; with ``visible`` (N, H, W, 1) its norm is over the kept sites of the batch."""

    def __init__(self, dim):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x, visible=None):
        if visible is None:
            gx = torch.norm(x, p=2, dim=(1, 2), keepdim=True)
        else:
            gx = torch.norm(x * visible, p=2, dim=(0, 1, 2), keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class Block(nn.Module):
    """The ConvNeXt-V2 block; ``visible`` (N, 1, H, W) makes it the sparse block, computed dense."""

    def __init__(self, dim):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.grn = MaskedGRN(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x, visible=None):
        shortcut = x
        if visible is not None:
            x = x * visible
        x = self.dwconv(x).permute(0, 2, 3, 1)
        x = functional.gelu(self.pwconv1(self.norm(x)))
        x = self.grn(x, None if visible is None else visible.permute(0, 2, 3, 1))
        x = self.pwconv2(x).permute(0, 3, 1, 2)
        if visible is not None:
            x = x * visible
        return shortcut + x


class DenseMaskedFCMAE(nn.Module):
    """The FCMAE of ``depths`` / ``dims``: ``forward(images NCHW, mask (N, L)) -> (loss, pred, mask)``."""

    def __init__(self, depths, dims, decoder_dim=512, decoder_depth=1, patch_size=32, norm_pix_loss=True):
        super().__init__()
        self.patch_size, self.norm_pix_loss = patch_size, norm_pix_loss
        self.encoder = nn.Module()
        stem = nn.Sequential(nn.Conv2d(3, dims[0], 4, 4), nn.LayerNorm(dims[0], eps=1e-6))
        self.encoder.downsample_layers = nn.ModuleList([stem])
        for i in range(1, len(dims)):
            self.encoder.downsample_layers.append(
                nn.Sequential(nn.LayerNorm(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], dims[i], 2, 2))
            )
        self.encoder.stages = nn.ModuleList(
            nn.ModuleList(Block(dim) for _ in range(depth)) for depth, dim in zip(depths, dims)
        )
        self.proj = nn.Conv2d(dims[-1], decoder_dim, 1)
        self.mask_token = nn.Parameter(torch.zeros(1, decoder_dim, 1, 1))
        self.decoder = nn.Sequential(*[Block(decoder_dim) for _ in range(decoder_depth)])
        self.pred = nn.Conv2d(decoder_dim, patch_size**2 * 3, 1)

    def _upsample(self, mask, rows, scale):
        grid = mask.reshape(-1, rows, mask.shape[1] // rows)
        return grid.repeat_interleave(scale, 1).repeat_interleave(scale, 2).unsqueeze(1).type_as(mask)

    def forward_encoder(self, images, mask):
        rows = images.shape[2] // self.patch_size
        visible = 1.0 - self._upsample(mask, rows, self.patch_size // 4)
        stem_conv, stem_norm = self.encoder.downsample_layers[0]
        x = _channels_last_norm(stem_norm, stem_conv(images)) * visible
        for i, stage in enumerate(self.encoder.stages):
            if i > 0:
                norm, conv = self.encoder.downsample_layers[i]
                x = conv(_channels_last_norm(norm, x) * visible)
                visible = visible[:, :, ::2, ::2]
                x = x * visible
            for block in stage:
                x = block(x, visible)
        return x

    def forward(self, images, mask):
        x = self.proj(self.forward_encoder(images, mask))
        n, _, h, w = x.shape
        removed = mask.reshape(n, 1, h, w).type_as(x)
        x = x * (1.0 - removed) + self.mask_token * removed
        pred = self.pred(self.decoder(x)).reshape(n, -1, h * w).transpose(1, 2)
        p = self.patch_size
        target = images.reshape(n, 3, h, p, w, p).permute(0, 2, 4, 3, 5, 1).reshape(n, h * w, p * p * 3)
        if self.norm_pix_loss:
            mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6) ** 0.5
        loss = ((pred - target) ** 2).mean(dim=-1)
        return (loss * mask).sum() / mask.sum(), pred, mask


def random_mask(batch_size, patch_count, mask_ratio, device="cpu"):
    """The official ``gen_random_mask``: ``patch_count - int(patch_count * (1 - mask_ratio))`` ones per row.

    Example:
        >>> int(random_mask(2, 49, 0.6).sum())
        60
    """
    keep = int(patch_count * (1 - mask_ratio))
    noise = torch.randn(batch_size, patch_count, device=device)
    restore = torch.argsort(torch.argsort(noise, dim=1), dim=1)
    return (restore >= keep).float()
