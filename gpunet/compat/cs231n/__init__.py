"""CS231n's ``cs231n`` package on gpunet: change ``from cs231n.X import Y`` to
``from gpunet.compat.cs231n.X import Y`` and a notebook runs on NumPy or CuPy.

Modules as in the assignments: ``layers``, ``fast_layers``, ``layer_utils``,
``classifiers.fc_net``, ``classifiers.cnn``, ``optim``, ``solver``, ``gradient_check``,
``data_utils``. Everything is a thin layer over gpunet with CS231n's conventions:
losses as Python floats, batchnorm running statistics starting at 0, dropout ``p`` the
keep probability and ``seed`` re-seeding NumPy's global state, models drawing their
weights from NumPy's global state (so ``np.random.seed`` reproduces the notebooks'
numbers), update rules that leave ``w`` alone, ``TwoLayerNet`` in float64.
"""
