"""Mitogen's linear strategy under the name ansible.cfg selects.

Mitogen for Ansible (the `mitogen` package, pinned in pyproject.toml) keeps
one Python interpreter per host for the whole run and sends it each task's
module, instead of starting `docker exec ... python3` (or `ssh ... python3`)
and unpacking the module anew for every task on every host: the per-task
cost that dominated labstack's deploys. Task order and results are those of
Ansible's own `linear` strategy; `ANSIBLE_STRATEGY=linear` runs without it.
"""

from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule

__all__ = ["StrategyModule"]
