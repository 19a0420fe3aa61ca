"""What adversarial methods (DANN, CDAN) share: a domain discriminator fooled through gradient
reversal, trained alongside the model, plus the source cross-entropy."""

from __future__ import annotations

import torch

from adaptflow.methods.base import Method, StepOutput
from adaptflow.methods.layers import DomainDiscriminator, domain_loss, reverse_gradient, warm_start


class AdversarialMethod(Method):
    """Options need `trade_off`, `hidden`, `warmup` (and may have `lr_mult`)."""

    def __init__(self, model, training, options, discriminator_inputs: int) -> None:
        super().__init__(model, training, options)
        self.discriminator = DomainDiscriminator(discriminator_inputs, options.hidden)

    def trainable_groups(self) -> list[dict]:
        discriminator = {
            "params": list(self.discriminator.parameters()),
            "lr": self.lr,
            "name": "discriminator",
        }
        return [*super().trainable_groups(), discriminator]

    def adversarial_step(
        self,
        source_ce: torch.Tensor,
        inputs: torch.Tensor,
        source_count: int,
        weights: torch.Tensor | None = None,
    ) -> StepOutput:
        """Source CE plus the discriminator's loss on `inputs` behind the gradient reversal."""
        coefficient = warm_start(self.progress, self.options.warmup)
        adversarial, accuracy = domain_loss(
            self.discriminator, reverse_gradient(inputs, coefficient), source_count, weights
        )
        return StepOutput(
            {"source_ce": source_ce, "domain_adversarial": self.options.trade_off * adversarial},
            {"domain_accuracy": accuracy},
        )
