"""TUM I2DL's ``exercise_code`` on gpunet: change ``from exercise_code.networks.layer import X``
to ``from gpunet.compat.i2dl.networks.layer import X`` (``networks.loss``,
``networks.optimizer``, ``networks.classifier``, ``networks.classification_net``,
``networks.base_networks``; the batchnorm/dropout exercise's ``layers``).

Thin classes over gpunet with I2DL's conventions: layers and losses are objects with
``forward``/``backward`` and a cache; ``affine_backward`` averages dw and db over the batch
(exercise 5's solution); a loss's ``forward`` is the mean over samples (or the per-sample
losses with ``individual_losses=True``) and its ``backward`` the gradient of that mean;
dropout ``p`` is the DROP probability; Adam's epsilon defaults to 1e-4; batchnorm running
statistics start at 0; the classifier folds the bias into W as its last row.
"""
