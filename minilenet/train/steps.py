"""One training step: forward, loss, backward and the optimizer's update, on a batch.

A step is called ``step(x, labels)`` and returns ``(loss, scores)``, having
updated the model's parameters. There are two: ``LayerGraphStep``, through the
layers (any network, loss and optimizer), and ``fused.TrainStep``, the paper
network's whole step in one compiled call, which the trainer takes when
``fused.supports`` says it computes the same thing faster.
"""


class LayerGraphStep:
    """The step through the layer graph: ``model.forward``, ``loss_fn``,
    ``model.backward`` (no input gradient: nothing needs it), ``optimizer.step``."""

    def __init__(self, model, loss_fn, optimizer):
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer

    def __call__(self, x, labels):
        scores = self.model.forward(x)
        loss, dscores = self.loss_fn(scores, labels)
        self.model.backward(dscores, input_grad=False)
        self.optimizer.step(self.model)
        return loss, scores
