"""The skeleton every Table 1 baseline shares: a question encoder, a raw-pixel CNN (all but the
question-only LSTM) and an MLP classifier whose logits come out as a `VQAOutput` without gates.

Dimensions: B batch, T question length, D question feature size, F classifier input, A answers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

from qgmrn.nn.baselines.layers import ConvFeatures
from qgmrn.nn.heads import mlp_classifier
from qgmrn.nn.output import VQAOutput


class Baseline(nn.Module):
    """`encoder` (questions (B, T), lengths (B,) -> q (B, D)), `cnn` (`ConvFeatures` of
    `cnn_widths`, none when it is None) and, once the subclass knows its input size F,
    `classifier` (`add_classifier(F)`: an MLP F -> `mlp_hidden` -> A).

    A subclass builds its own layers between `super().__init__` and `add_classifier`: modules
    draw their initial weights in the order they are made (encoder, CNN, the subclass's layers,
    classifier), which is what a seed fixes.
    """

    def __init__(
        self,
        vocab_size: int,
        num_answers: int,
        *,
        encoder: Callable[[int, int, int], nn.Module],
        cnn_widths: Sequence[int] | None = None,
        embed_dim: int = 200,
        hidden_dim: int = 512,
        mlp_hidden: int = 1024,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.encoder = encoder(vocab_size, embed_dim, hidden_dim)
        if cnn_widths is not None:
            self.cnn = ConvFeatures(3, cnn_widths)
        self._classifier_sizes = (mlp_hidden, num_answers, dropout)

    def add_classifier(self, in_features: int) -> None:
        mlp_hidden, num_answers, dropout = self._classifier_sizes
        self.classifier = mlp_classifier(in_features, mlp_hidden, num_answers, dropout)

    def answer(self, features: Tensor) -> VQAOutput:
        """The logits (B, A) of the classifier on `features` (B, F); baselines have no gates."""
        return VQAOutput(self.classifier(features), [], [])
