"""CS231n's ``cs231n/classifiers``: ``fc_net`` (TwoLayerNet, FullyConnectedNet) and ``cnn``
(ThreeLayerConvNet), gpunet's models with the course's conventions."""
