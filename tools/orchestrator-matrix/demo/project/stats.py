"""Small statistics helpers: the demo project MACP's demo works on."""


def mean(values):
    """Arithmetic mean of a non-empty list of numbers."""
    return sum(values) / len(values)


def median(values):
    """Middle value of a non-empty list of numbers."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle]


def word_count(text):
    """Number of words in ``text``."""
    return len(text.split(" "))
