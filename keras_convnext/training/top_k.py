"""Which top-k accuracy is worth reporting for a number of classes."""


def informative_top_k(classes, largest=5):
    """The ``k`` of the top-k accuracy to report beside accuracy: at most ``largest`` and less than ``classes`` (the
    top-k of all the classes is 1.0 whatever the model), or ``None`` where that leaves only top-1, which is accuracy.

    Example:
        >>> informative_top_k(1000), informative_top_k(3), informative_top_k(2)
        (5, 2, None)
    """
    k = min(largest, classes - 1)
    return k if k >= 2 else None
