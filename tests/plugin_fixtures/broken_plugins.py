"""Plug-ins that each break one contract of ``synergy-bench check`` (and keep the others)."""
import torch

from synergy_bench import get_generator, get_method, register_generator, register_method

CoMM = get_method("comm")
Latent = get_generator("latent")


@register_method
class FlatLoss(CoMM):
    """A stray ``detach``: the loss carries no gradient to the weights, so training cannot lower it
    (the zero term only keeps ``backward`` from raising)."""

    name = "flat_loss"

    def loss(self, views1, views2, epoch, max_epochs, labels=None):
        return super().loss(views1, views2, epoch, max_epochs, labels).detach() + 0.0 * self.head[0].weight.sum()


@register_method
class StrayDevice(CoMM):
    """Weights its terms with a tensor made on the default device, not the inputs' device."""

    name = "stray_device"

    def loss(self, views1, views2, epoch, max_epochs, labels=None):
        terms = torch.stack(self.terms(views1, views2, epoch, max_epochs))
        weights = torch.ones(len(terms))
        return (terms * weights).sum() / len(terms)


@register_method
class GlobalRng(CoMM):
    """Jitters its inputs with the global random generator, so the seed does not fix the run."""

    name = "global_rng"

    def loss(self, views1, views2, epoch, max_epochs, labels=None):
        jitter = [v + 0.01 * torch.randn_like(v) for v in views1]
        return super().loss(jitter, views2, epoch, max_epochs, labels)


@register_generator
class StrayViews(Latent):
    """Adds nuisance made on the default device to its views."""

    name = "stray_views"

    def views(self, z, gen):
        return [v + 0.1 * torch.rand(v.shape, generator=torch.Generator()) for v in super().views(z, gen)]
