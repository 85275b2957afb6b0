"""The bilevel search: the LightningModule (``module``), what it reports per epoch (``report``,
``figures``), the Hessian diagnostic and DARTS-PT's perturbation-based selection.
"""
