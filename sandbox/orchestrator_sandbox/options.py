"""The sandbox world's settings: how long its physics take, declared once.

`sandbox up` offers each as a flag (`acm_delay` as `--acm-delay`), the world's starter
passes them on to the world's process, and that process reads them back; a new setting
is added here only. Defaults are short, so a whole run takes seconds, but never zero:
every wait the real services impose is there, only faster.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    name: str
    default: float
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


SETTINGS = (
    Setting("acm_delay", 5.0, "seconds ACM takes to issue once the validation record resolves"),
    Setting("alb_delay", 5.0, "seconds the load balancer controller takes to make an ALB"),
    Setting("dns_delay", 1.0, "seconds a Route 53 change stays PENDING before it is INSYNC"),
    Setting("target_delay", 2.0, "seconds new ALB targets stay `initial` before `healthy`"),
    Setting(
        "drain_delay", 2.0, "seconds a deleted ALB's network interfaces hold its security groups"
    ),
    Setting("crd_delay", 0.5, "seconds a new CustomResourceDefinition takes to be Established"),
    Setting("token_ttl", 900.0, "seconds a cluster's bearer token is accepted (EKS: 900)"),
)
SECOND_TEAM_HELP = (
    "seed another team's Ingress of class alb (team-data/dashboard) in the production cluster"
)


def defaults() -> dict[str, float]:
    return {s.name: s.default for s in SETTINGS}


def as_arguments(values: dict[str, float], second_team: bool = False) -> list[str]:
    """The world process's command-line arguments for these settings."""
    arguments = []
    for setting in SETTINGS:
        arguments += [setting.flag, str(values.get(setting.name, setting.default))]
    return arguments + (["--second-team"] if second_team else [])
