"""MACP core library: state files, locking, events, scheduling, processes and git.

Everything here is standard library only. Pure modules decide (``lifecycle``,
``scheduler``, ``classify``, ``guidance``, ``runtimes``); thin modules do I/O (``fsio``,
``locks``, ``taskstore``, ``events``, ``procs``, ``gitops``).
"""

__version__ = "0.9.0"
