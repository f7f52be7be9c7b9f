"""Networks of the GAN family: a class-conditional generator, a projection discriminator, an encoder.

All three read and write images in [0, 1] (the dgbench convention) and centre them internally, so
the LightningModule never converts ranges. They are DCGAN-shaped (Radford et al. 2016): strided
(transposed) 4x4 convolutions between 7x7, 14x14 and 28x28, which is all MNIST needs and keeps a
training step cheap enough for a CPU.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm


class ConditionalNorm(nn.Module):
    """Normalisation followed by a per-class gain and bias: h_hat * (1 + gamma_y) + beta_y.

    ``batch`` is conditional BatchNorm (Miyato & Koyama 2018; de Vries et al. 2017): statistics
    over the batch and the pixels, running averages in eval mode. ``instance`` normalises each
    image on its own (conditional instance norm, Dumoulin et al. 2017), the generator's first
    norm, which checkpoints without ``g_norm`` were trained with. It was suspected of mode
    collapse, but in the collapsed gan_cpu generator it keeps z's effect intact (only 2.6 % of
    z's contribution to the 7x7 projection sits in the per-channel means it removes): z is
    discarded by the first up-convolution instead (see models/gan.py). Centring matters:
    with PixelNorm (no centring) G's output swung between black and grey and no digits formed.
    """

    def __init__(self, channels: int, num_classes: int, kind: str = "batch") -> None:
        super().__init__()
        if kind not in ("batch", "instance"):
            raise ValueError(f"norm must be 'batch' or 'instance', not {kind!r}")
        self.norm = nn.BatchNorm2d(channels, affine=False) if kind == "batch" else nn.InstanceNorm2d(channels)
        self.gain, self.bias = nn.Embedding(num_classes, channels), nn.Embedding(num_classes, channels)
        nn.init.zeros_(self.gain.weight)  # start as the unconditional normalisation
        nn.init.zeros_(self.bias.weight)

    def forward(self, h: Tensor, y: Tensor) -> Tensor:
        return self.norm(h) * (1 + self.gain(y)[:, :, None, None]) + self.bias(y)[:, :, None, None]


class Generator(nn.Module):
    """G(z, y): latent (N, latent_dim) and labels (N,) -> images (N, 1, 28, 28) in [0, 1]."""

    def __init__(self, latent_dim: int = 64, width: int = 64, num_classes: int = 10, norm: str = "batch") -> None:
        super().__init__()
        self.width = width
        self.embed = nn.Embedding(num_classes, latent_dim)  # the class also enters with z
        self.fc = nn.Linear(2 * latent_dim, 2 * width * 7 * 7)
        self.up1 = nn.ConvTranspose2d(2 * width, width, 4, 2, 1)  # 7 -> 14
        self.up2 = nn.ConvTranspose2d(width, width // 2, 4, 2, 1)  # 14 -> 28
        self.out = nn.Conv2d(width // 2, 1, 3, 1, 1)
        self.norms = nn.ModuleList(ConditionalNorm(c, num_classes, norm) for c in (2 * width, width, width // 2))

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        h = self.fc(torch.cat([z, self.embed(y)], dim=1)).view(-1, 2 * self.width, 7, 7)
        h = torch.relu(self.norms[0](h, y))
        h = torch.relu(self.norms[1](self.up1(h), y))
        h = torch.relu(self.norms[2](self.up2(h), y))
        # sigmoid(2a) = (tanh(a) + 1) / 2: DCGAN's tanh output, mapped to [0, 1].
        return torch.sigmoid(2 * self.out(h))


def _conv_trunk(width: int, wrap: Callable[[nn.Module], nn.Module] | None = None) -> nn.Sequential:
    """28x28x1 -> 7x7x(4*width) feature maps; ``wrap`` (spectral norm) is applied to every conv."""
    convs = [
        nn.Conv2d(1, width, 4, 2, 1),
        nn.Conv2d(width, 2 * width, 4, 2, 1),
        nn.Conv2d(2 * width, 4 * width, 3, 1, 1),
    ]
    layers: list[nn.Module] = []
    for conv in convs:
        layers += [wrap(conv) if wrap else conv, nn.LeakyReLU(0.1)]
    return nn.Sequential(*layers)


class Discriminator(nn.Module):
    """Projection discriminator (Miyato & Koyama 2018, eq. 3): D(x, y) = psi(phi(x)) + v_y . phi(x).

    Every layer is spectrally normalised (Miyato et al. 2018), which bounds D's Lipschitz constant
    and is what lets the hinge loss train without gradient penalties. phi(x) is the flattened 7x7
    feature map, as in SN-GAN's "standard CNN": flattening preserves the features' norm. In
    600-step trials, sum pooling (which can scale it by 7) let D win outright and no digits
    formed; mean pooling (1/7) kept D's loss near chance and gave visibly worse digits.
    """

    def __init__(self, width: int = 32, num_classes: int = 10) -> None:
        super().__init__()
        self.trunk = _conv_trunk(width, spectral_norm)
        self.psi = spectral_norm(nn.Linear(4 * width * 7 * 7, 1))
        self.embed = spectral_norm(nn.Embedding(num_classes, 4 * width * 7 * 7))

    def features(self, x: Tensor) -> Tensor:
        """Last feature maps (N, 4*width, 7, 7): f-AnoGAN's feature residual is measured here."""
        return self.trunk(x * 2.0 - 1.0)

    def all_classes(self, x: Tensor) -> Tensor:
        """D(x, y) for every class at once, (N, num_classes): phi(x) is shared, only v_y changes."""
        phi = self.features(x).flatten(1)
        return self.psi(phi) + phi @ self.embed.weight.t()

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        phi = self.features(x).flatten(1)
        return self.psi(phi).squeeze(1) + (self.embed(y) * phi).sum(dim=1)


class Encoder(nn.Module):
    """E(x): images -> latent codes (N, latent_dim), trained to invert the generator (f-AnoGAN).

    It ends in a linear layer over the flattened 7x7 maps (no pooling): where the strokes are is
    exactly what the latent code must carry.
    """

    def __init__(self, latent_dim: int = 64, width: int = 32) -> None:
        super().__init__()
        self.trunk = _conv_trunk(width)
        self.head = nn.Linear(4 * width * 7 * 7, latent_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.trunk(x * 2.0 - 1.0).flatten(1))
