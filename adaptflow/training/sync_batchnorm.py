"""BatchNorm over the global batch in data-parallel training, on GPUs and on CPUs.

torch's SyncBatchNorm runs on GPUs only. `GlobalBatchNorm` does the same on any device with
any backend (gloo on CPU): per-channel sums and sums of squares are all-reduced, in float64,
through a differentiable all-reduce, so both the normalisation and its gradient see every
process's rows. On CUDA the layers become torch's SyncBatchNorm (fused kernels).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the gradient of a sum is the sum of the gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm{1,2,3}d whose training statistics cover the rows of every process."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        synced = self.training and dist.is_initialized() and dist.get_world_size() > 1
        if not synced:
            return super().forward(input)
        channels = input.shape[1]
        dims = [0, *range(2, input.dim())]
        values = input.double()  # sums in float64: E[x^2] - E[x]^2 must not cancel
        local = torch.cat(
            [
                values.sum(dims),
                (values * values).sum(dims),
                values.new_tensor([input.numel() / channels]),
            ]
        )
        total = _AllReduceSum.apply(local)
        count = total[-1]
        mean = total[:channels] / count
        var = (total[channels : 2 * channels] / count - mean * mean).clamp_min(0)
        shape = [1, channels] + [1] * (input.dim() - 2)
        scale = torch.rsqrt(var + self.eps).float().view(shape)
        output = (input.float() - mean.float().view(shape)) * scale
        if self.affine:
            output = output * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            self._update_running_stats(mean, var * count / (count - 1).clamp_min(1))
        return output.to(input.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        self.num_batches_tracked.add_(1)
        momentum = self.momentum
        if momentum is None:  # cumulative moving average, as in torch's BatchNorm
            momentum = 1.0 / float(self.num_batches_tracked)
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
        self.running_var.lerp_(unbiased_var.to(self.running_var.dtype), momentum)


def synchronize_batchnorm(module: nn.Module, device: torch.device) -> int:
    """Replace every BatchNorm layer of `module` in place by a synchronised one.

    Parameters and buffers are shared with the old layers, so optimizer groups built before
    stay valid. Returns how many layers were replaced.
    """
    layer_type = nn.SyncBatchNorm if device.type == "cuda" else GlobalBatchNorm
    replaced = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, _BatchNorm) or isinstance(child, layer_type):
                continue
            layer = layer_type(
                child.num_features, child.eps, child.momentum, child.affine,
                child.track_running_stats,
            )  # fmt: skip
            if child.affine:
                layer.weight, layer.bias = child.weight, child.bias
            if child.track_running_stats:
                layer.running_mean, layer.running_var = child.running_mean, child.running_var
                layer.num_batches_tracked = child.num_batches_tracked
            layer.train(child.training)
            setattr(parent, name, layer)
            replaced += 1
    return replaced
